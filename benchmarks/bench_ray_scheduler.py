"""Benchmark: Ray tasks with ``max_retries`` (madlab's runner) vs the hand-written actor pool it replaced.

Issue 10 asked whether plain Ray tasks (Ray reuses worker processes, so imports are paid once
per process) can replace the pool of ``LoopWorker`` actors with the same fault tolerance,
resource pools and packing of cheap runs, and to take the simpler design if it is as fast.
The actor pool is kept here, verbatim in behaviour, as the baseline (``ActorPool``); both run the
same units (``madlab.runner.jobs.pack``) through the same driver (``SweepState``), in the same
Ray instance, alternating which goes first in every round. Workloads:

  cheap   many Gaussian runs packed into units (start-up and dispatch dominate);
  flow    CPU-bound RealNVP runs, one unit each (parallel efficiency);
  kill    cheap runs whose worker process dies once per run before generation 2 (recovery).

It prints the wall time of each and the same-run ratio tasks / actors (< 1: tasks faster).
On a machine that other processes load, only the same-run ratios mean anything, and even those
must be re-measured on an idle machine before they are quoted.

    python benchmarks/bench_ray_scheduler.py [--rounds 3] [--cheap-runs 200] [--flow-runs 4]
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


# ----------------------------------------------------------------------------- the baseline


@functools.lru_cache(maxsize=None)
def _worker_class():
    import ray

    from madlab.runner.jobs import run_jobs
    from madlab.runner.progress import Reporter

    @ray.remote
    class LoopWorker:
        """One process that runs units of jobs on the device Ray assigned it."""

        def __init__(self, num_cpus: float):
            import torch

            torch.set_num_threads(max(1, int(num_cpus)))
            gpus = ray.get_gpu_ids()
            self.device = "cuda" if gpus and torch.cuda.is_available() else "cpu"

        def ready(self) -> str:
            return self.device

        def run(self, jobs, fault, tracker=None):
            reporter = Reporter(tracker)
            try:
                return run_jobs(jobs, device=self.device, fault=fault, report=reporter)
            finally:
                reporter.flush()

    return LoopWorker


class _Pool:
    """Actors of one resource shape and the units waiting for them."""

    def __init__(self, resources, options, queue, target):
        self.resources, self.options, self.queue, self.target = resources, options, queue, target
        self.actors, self.idle, self.starting, self.start_failures = [], [], {}, 0


def actor_pool(pending, sweep, *, fault, workers, wait_s):
    """The actor-pool scheduler madlab shipped before issue 10 (same signature as ``run_on_ray``)."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    from madlab.runner.jobs import finished, give_up, pack
    from madlab.runner.ray_tasks import (MAX_ATTEMPTS, MAX_IN_FLIGHT, MAX_RESTARTS, _tracker_class, capacity,
                                         max_restarts)

    worker_cls = _worker_class()
    tracker = _tracker_class().remote()
    sweep.poll = lambda: ray.get(tracker.snapshot.remote())
    cluster = ray.cluster_resources()
    groups = {}
    for job in pending:
        groups.setdefault(job.resources, []).append(job)
    restarts = max_restarts()
    pools = []
    for resources, jobs in groups.items():
        num_cpus, num_gpus, memory = resources
        cap = max(1, capacity(resources, cluster))
        units = pack(jobs, workers or cap)
        options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": restarts, "max_task_retries": restarts}
        if memory:
            options["memory"] = memory
        pools.append(_Pool(resources, options, units, min(len(units), workers or min(cap, MAX_IN_FLIGHT))))
    attempts, in_flight = {}, {}

    def start_actor(pool):
        actor = worker_cls.options(**pool.options).remote(pool.resources[0])
        ref = actor.ready.remote()
        pool.actors.append(actor)
        pool.starting[ref] = actor
        in_flight[ref] = (pool, actor, None)

    def drop(pool, actor):
        if actor in pool.actors:
            pool.actors.remove(actor)
        ray.kill(actor, no_restart=True)

    for pool in pools:
        for _ in range(pool.target):
            start_actor(pool)
    try:
        while True:
            for pool in pools:
                while pool.queue and pool.idle:
                    actor, unit = pool.idle.pop(), pool.queue.pop(0)
                    in_flight[actor.run.remote(unit, fault, tracker)] = (pool, actor, unit)
                if not pool.queue:
                    for actor in pool.idle:
                        drop(pool, actor)
                    pool.idle.clear()
                    for ref, actor in pool.starting.items():
                        in_flight.pop(ref, None)
                        drop(pool, actor)
                    pool.starting.clear()
                if pool.queue and not pool.actors:
                    start_actor(pool)
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=wait_s)
            for ref in ready:
                pool, actor, unit = in_flight.pop(ref)
                if unit is None:
                    pool.starting.pop(ref, None)
                    try:
                        ray.get(ref)
                        pool.idle.append(actor)
                    except (RayActorError, RayTaskError) as exc:
                        drop(pool, actor)
                        pool.start_failures += 1
                        if pool.start_failures > MAX_RESTARTS:
                            sweep.finish(give_up([j for u in pool.queue for j in u],
                                                 f"worker could not start: {str(exc).splitlines()[0]}"))
                            pool.queue.clear()
                        elif pool.queue and len(pool.actors) < pool.target:
                            start_actor(pool)
                    continue
                try:
                    sweep.finish(ray.get(ref))
                    pool.idle.append(actor)
                except (RayActorError, WorkerCrashedError) as exc:
                    drop(pool, actor)
                    for job in unit:
                        if job.last_done() >= job.generations:
                            sweep.finish([finished(job)])
                        elif attempts.get(job.run_id, 0) + 1 < MAX_ATTEMPTS:
                            attempts[job.run_id] = attempts.get(job.run_id, 0) + 1
                            pool.queue.append([job])
                        else:
                            sweep.finish(give_up([job], f"worker died repeatedly ({type(exc).__name__})"))
                    if pool.queue and len(pool.actors) < pool.target:
                        start_actor(pool)
                except RayTaskError as exc:
                    sweep.finish(give_up(unit, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
                    pool.idle.append(actor)
            sweep.tick()
    finally:
        for pool in pools:
            for actor in list(pool.actors):
                ray.kill(actor, no_restart=True)
        sweep.poll = None
        ray.kill(tracker, no_restart=True)


# ----------------------------------------------------------------------------- workloads


def cheap_spec(runs: int) -> dict:
    return {"name": "bench-sched-cheap", "dataset": {"name": "gaussian", "dim": 10}, "generator": {"name": "gaussian"},
            "loop": {"scheme": "fully-synthetic", "generations": 10, "n_real": 100, "n_synthetic": 100},
            "metrics": {"k": 5}, "sweep": {"seed": list(range(runs))}}


def flow_spec(runs: int, epochs: int) -> dict:
    return {"name": "bench-sched-flow", "dataset": {"name": "rosenbrock"},
            "generator": {"name": "flow", "preset": "cpu", "coupling": "affine", "layers": 4, "hidden": 32, "epochs": epochs},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 1000, "n_synthetic": 1000},
            "metrics": {"k": 5}, "resources": {"num_cpus": 1}, "sweep": {"seed": list(range(runs))}}


def timed(spec: dict, out: str, scheduler: str, fault: str | None = None) -> float:
    from madlab.runner import Runner, ray_tasks
    from madlab.specs import build_spec

    original = ray_tasks.run_on_ray
    if scheduler == "actors":
        ray_tasks.run_on_ray = actor_pool
    if fault:
        os.environ["MADLAB_FAULT"] = fault
    try:
        start = time.perf_counter()
        summary = Runner(build_spec(spec), out, stream=open(os.devnull, "w")).run()
        seconds = time.perf_counter() - start
    finally:
        ray_tasks.run_on_ray = original
        os.environ.pop("MADLAB_FAULT", None)
    assert not summary.failed, [o.error for o in summary.failed]
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cheap-runs", type=int, default=200)
    parser.add_argument("--kill-runs", type=int, default=8)
    parser.add_argument("--flow-runs", type=int, default=4)
    parser.add_argument("--flow-epochs", type=int, default=60)
    parser.add_argument("--only", choices=["cheap", "flow", "kill"], action="append")
    args = parser.parse_args()

    import ray

    workloads = {
        "cheap": (cheap_spec(args.cheap_runs), None),
        "flow": (flow_spec(args.flow_runs, args.flow_epochs), None),
        "kill": (cheap_spec(args.kill_runs), "kill:*:2"),
    }
    chosen = args.only or list(workloads)
    cores = os.cpu_count()
    os.environ.setdefault("RAY_worker_niceness", "0")  # as madlab's runner starts its local Ray (runner/ray_tasks.py)
    ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR)
    load_before = os.getloadavg()
    times = {(w, s): [] for w in chosen for s in ("tasks", "actors")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("tasks", "actors") if r % 2 == 0 else ("actors", "tasks")
            for workload in chosen:
                spec, fault = workloads[workload]
                for scheduler in order:
                    seconds = timed(spec, f"{tmp}/{workload}-{scheduler}-{r}", scheduler, fault)
                    times[workload, scheduler].append(seconds)
                    print(f"round {r + 1} {workload:5s} {scheduler:6s} {seconds:7.2f} s", flush=True)
    load_after = os.getloadavg()
    ray.shutdown()
    print(f"\n{cores} cores; load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"({cores} = machine fully busy; other processes move both columns)")
    print(f"{'workload':28s} {'tasks (s)':>10s} {'actors (s)':>11s}  ratio tasks/actors per round (median)")
    labels = {"cheap": f"cheap: {args.cheap_runs} gaussian runs x 10",
              "flow": f"flow: {args.flow_runs} runs x 2, {args.flow_epochs} ep",
              "kill": f"kill: {args.kill_runs} runs, kill:*:2"}
    for workload in chosen:
        tasks, actors = times[workload, "tasks"], times[workload, "actors"]
        ratios = [t / a for t, a in zip(tasks, actors)]
        print(f"{labels[workload]:28s} {statistics.median(tasks):10.2f} {statistics.median(actors):11.2f}  "
              f"{' '.join(f'{x:.2f}' for x in ratios)} ({statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
