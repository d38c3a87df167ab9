"""Running units of jobs on Ray: one Ray task per unit, retried by Ray when its worker dies.

Resources. Every run asks for ``resources: {num_cpus, num_gpus, memory}`` (fractional GPUs
allowed: four small MNIST loops can share a GPU at ``num_gpus: 0.25``); its unit's task asks
Ray for exactly that, so runs of different shapes are scheduled side by side and a finished
task frees its share at once. A worker runs its generator on the device Ray assigned it
(``cuda`` when it holds a GPU share, else ``cpu``); with a fraction of a GPU it caps its process at
that fraction of the card's memory. On a cluster (``--address``) the pending tasks are the demand
that makes the autoscaler add (GPU) nodes. What fits is counted per node (:mod:`madlab.runner.placement`);
runs of a shape that no alive node fits are waited for up to ``$MADLAB_PLACEMENT_TIMEOUT_S``, then
fail with one line.

Worker processes. Ray reuses a task's worker process for later tasks, so torch and the
generator stack are imported once per process, not once per unit. Not for GPU tasks: a process
keeps the GPU it first initialised CUDA on, whatever Ray assigns it next, so a GPU unit gets a
fresh process (``max_calls=1``, Ray's own default for GPU tasks).

Fault tolerance. A generation is published atomically (:mod:`madlab.store.storage`) and a worker
resumes every run from its last published generation, so redoing a unit is always safe:

* a worker process that dies (node lost, spot preemption, OOM kill) has its task retried by
  Ray (``MAX_RESTARTS``, ``MADLAB_MAX_RESTARTS`` overrides it); a unit whose retries are spent
  has its unfinished runs retried one by one (``MAX_ATTEMPTS``, so one poison run cannot sink
  its batch) before they are marked failed;
* a driver killed outright takes its tasks with it; started again it skips every published
  generation and redoes at most one generation per run;
* a run that raises (NaN loss, bad data) is recorded in its FAILED marker and the table, and
  the other runs go on; an exception escaping the worker (a bug) fails its unit's runs.
  Failures are not retried within a sweep; running the command again does.

This replaced a hand-written pool of actors (``benchmarks/bench_ray_scheduler.py`` measures
the two against each other).
"""
from __future__ import annotations

import functools
import logging
import os
from collections import Counter, defaultdict

from madlab.core.errors import MadlabError
from madlab.core.portable import is_portable, portable_env
from madlab.runner.jobs import Job, finished, give_up, pack, run_jobs
from madlab.runner.placement import (PlacementWatch, alive_nodes, cap_gpu_memory, capacity as node_capacity, describe,
                                     describe_nodes)
from madlab.runner.progress import Reporter, merge_report

#: times Ray retries a unit whose worker process died
MAX_RESTARTS = 4
#: times a run is tried alone after its unit's retries were spent
MAX_ATTEMPTS = 2
#: the most tasks of one resource shape in flight (on a cluster, pending ones drive the autoscaler)
MAX_IN_FLIGHT = 256


def max_restarts() -> int:
    return int(os.environ.get("MADLAB_MAX_RESTARTS", MAX_RESTARTS))


def init_ray(address: str | None) -> None:
    import ray  # Ray loads only where a sweep runs on it: --no-ray and validate never do

    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True,
              "configure_logging": True}
    if is_portable():  # every worker, on every node, loads its libraries with the pinned kernels
        kwargs["runtime_env"] = {"env_vars": portable_env()}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # Ray starts its workers at niceness 15, so on a workstation any other process (an editor's
        # indexer, a pip install) takes the cores from the sweep the user is waiting for. The local
        # instance madlab starts is the user's main job: its workers run at the driver's priority
        # unless the user says otherwise (RAY_worker_niceness in the environment wins).
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=os.cpu_count(), **kwargs)


def capacity(resources: tuple, cluster: dict | list) -> int:
    """How many runs of this shape fit at once: on one totals dict, or per node on a list of them."""
    return node_capacity(resources, cluster if isinstance(cluster, list) else [cluster])


def connect(pending: list[Job], address: str | None, stream) -> None:
    """Start or join Ray; refuse (MadlabError) a run the local instance can never hold."""
    import ray  # Ray loads only where a sweep runs on it: --no-ray and validate never do

    if not ray.is_initialized():
        init_ray(address)
    nodes = alive_nodes()
    for resources in sorted({j.resources for j in pending}, key=str):
        if capacity(resources, nodes) == 0:
            wanted, have = describe(resources), describe_nodes(nodes)
            if address is None:
                raise MadlabError(f"resources: a run asks for {wanted} but the local Ray instance has {have}; "
                                  f"lower resources.* or use --address to reach a cluster that has them")
            stream.write(f"[madlab] waiting for the cluster to add nodes for runs with {wanted} (it has {have} now)\n")


def run_unit(jobs: list[Job], fault: str | None, tracker) -> list:
    """The body of a unit's task, in a Ray worker process."""
    import ray  # Ray loads only where a sweep runs on it: --no-ray and validate never do
    import torch  # Ray loads only where a sweep runs on it: --no-ray and validate never do

    torch.set_num_threads(max(1, int(jobs[0].resources[0])))
    gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    if gpu:
        cap_gpu_memory(jobs[0].resources[1])
    reporter = Reporter(tracker)
    try:
        outcomes = run_jobs(jobs, device="cuda" if gpu else "cpu", fault=fault, report=reporter)
    finally:
        reporter.flush()
    node = ray.get_runtime_context().get_node_id()
    for outcome in outcomes:
        outcome.node = node
    return outcomes


@functools.lru_cache(maxsize=None)
def _remote(gpu: bool):
    import ray  # Ray loads only where a sweep runs on it: --no-ray and validate never do

    return ray.remote(max_calls=1 if gpu else 0)(run_unit)


@functools.lru_cache(maxsize=None)
def _tracker_class():
    import ray  # Ray loads only where a sweep runs on it: --no-ray and validate never do

    @ray.remote(num_cpus=0)
    class ProgressTracker:
        """Progress the workers reported: per run (last generation, compute seconds, generations
        timed), the timings summed since the driver last took them."""

        def __init__(self):
            self.done = {}

        def update(self, done: dict) -> None:
            for run_id, report in done.items():
                self.done[run_id] = merge_report(self.done.get(run_id), report)

        def snapshot(self) -> dict:
            taken, self.done = self.done, {}
            return taken

    return ProgressTracker


def _task_options(resources: tuple, retries: int) -> dict:
    num_cpus, num_gpus, memory = resources
    options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": retries, "retry_exceptions": False}
    if memory:
        options["memory"] = memory
    return options


def _lost(unit: list[Job], exc: Exception, attempts: Counter, sweep) -> list[Job]:
    """The jobs of a unit whose worker kept dying that get another try, alone; the rest finish or fail."""
    retry = []
    for job in unit:
        if job.last_done() >= job.generations:
            sweep.finish([finished(job)])
        elif attempts[job.run_id] + 1 < MAX_ATTEMPTS:
            attempts[job.run_id] += 1
            retry.append(job)  # alone, so one poison run cannot sink its batch
        else:
            sweep.finish(give_up([job], f"worker died repeatedly ({type(exc).__name__})"))
    return retry


def _lost_batch(unit: list[Job], exc: Exception, attempts: Counter, sweep) -> list[Job]:
    """A batch whose worker kept dying: tried again whole (its worker then runs the members one at
    a time, so a poison run fails alone, see madlab.runner.batch_worker), or given up on."""
    key = unit[0].batch
    if attempts[key] < MAX_ATTEMPTS:
        attempts[key] += 1
        return unit
    for job in unit:
        if job.last_done() >= job.generations:
            sweep.finish([finished(job)])
        else:
            sweep.finish(give_up([job], f"worker died repeatedly ({type(exc).__name__})"))
    return []


def run_on_ray(pending: list[Job], sweep, *, fault: str | None, workers: int | None, wait_s: float) -> None:
    """Run every pending job as Ray tasks, handing each outcome to ``sweep.finish``.

    ``workers`` caps the tasks of one resource shape in flight (and sets how cheap runs are
    packed); ``sweep.tick()`` is called at least every ``wait_s`` seconds.
    """
    import ray  # loaded where a sweep runs on Ray: --no-ray runs and `madlab validate` never load it
    # Ray loads only where a sweep runs on it: --no-ray and validate never do
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # on the driver's node: losing another node must not take the progress tracker with it
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    tracker = _tracker_class().options(scheduling_strategy=here).remote()
    sweep.poll = lambda: ray.get(tracker.snapshot.remote())
    scheduler = _Scheduler(pending, sweep, tracker, fault=fault, workers=workers)
    try:
        while scheduler.queue or scheduler.in_flight:
            scheduler.submit()
            ready, _ = ray.wait(list(scheduler.in_flight), num_returns=1, timeout=wait_s)
            scheduler.collect(ready)
            scheduler.expire()
            sweep.tick()
    finally:
        for ref in scheduler.in_flight:
            ray.cancel(ref, force=True)
        sweep.poll = None
        ray.kill(tracker, no_restart=True)


class _Scheduler:
    """The driver's queue of units (jobs packed per resource shape) and the Ray tasks in flight."""

    def __init__(self, pending: list[Job], sweep, tracker, *, fault: str | None, workers: int | None):
        self.sweep, self.tracker, self.fault, self.workers = sweep, tracker, fault, workers
        cluster = alive_nodes()
        self.watch = PlacementWatch(stream=getattr(getattr(sweep, "progress", None), "stream", None))
        self.retries = max_restarts()
        self.queue: list[tuple[tuple, list[Job]]] = []
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for job in pending:
            groups[job.resources].append(job)
        for resources, jobs in groups.items():
            self.queue += [(resources, unit) for unit in pack(jobs, workers or max(1, capacity(resources, cluster)))]
        self.in_flight: dict = {}  # ref -> (resources, unit)
        self.running: Counter = Counter()
        self.attempts: Counter = Counter()

    def submit(self) -> None:
        """Start queued units, at most ``workers`` (else ``MAX_IN_FLIGHT``) per resource shape."""
        waiting = []
        for resources, unit in self.queue:
            if self.running[resources] >= (self.workers or MAX_IN_FLIGHT):
                waiting.append((resources, unit))
                continue
            task = _remote(resources[1] > 0).options(**_task_options(resources, self.retries))
            self.in_flight[task.remote(unit, self.fault, self.tracker)] = (resources, unit)
            self.running[resources] += 1
        self.queue = waiting

    def collect(self, ready: list) -> None:
        """Hand finished units' outcomes to the sweep; a lost worker's runs go back to the queue."""
        import ray  # see run_on_ray
        # Ray loads only where a sweep runs on it: --no-ray and validate never do
        from ray.exceptions import RayError, RayTaskError

        for ref in ready:
            resources, unit = self.in_flight.pop(ref)
            self.running[resources] -= 1
            try:
                self.sweep.finish(ray.get(ref))
            except RayTaskError as exc:  # a bug escaped run_jobs: record it, keep the sweep going
                self.sweep.finish(give_up(unit, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
            except RayError as exc:  # the worker died and Ray's retries are spent
                if unit[0].batch is not None:  # a batch is retried whole: it isolates its runs itself
                    retry = _lost_batch(unit, exc, self.attempts, self.sweep)
                    self.queue += [(resources, retry)] if retry else []
                else:
                    self.queue += [(resources, [job]) for job in _lost(unit, exc, self.attempts, self.sweep)]

    def expire(self) -> None:
        """Give up on the runs of a resource shape that no node can place (``PlacementWatch``)."""
        import ray  # see run_on_ray

        for shape, reason in self.watch.expired({r for r, _ in self.queue} | {r for r, _ in self.in_flight.values()}):
            stuck = [job for r, unit in self.queue if r == shape for job in unit]
            self.queue = [(r, unit) for r, unit in self.queue if r != shape]
            for ref, (r, unit) in list(self.in_flight.items()):
                if r == shape:
                    ray.cancel(ref, force=True)
                    self.in_flight.pop(ref)
                    self.running[r] -= 1
                    stuck += unit
            self.sweep.finish([finished(j) for j in stuck if j.last_done() >= j.generations])
            self.sweep.finish(give_up([j for j in stuck if j.last_done() < j.generations], reason))
