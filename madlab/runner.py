"""The Ray runner: schedules runs onto actors; all the work is in :mod:`madlab.loop`.

Units of work. Each unit is a list of runs handed to one ``LoopWorker`` actor. Runs of a
*cheap* generator (Gaussian, GMM: milliseconds per generation) are packed many to a unit, so a
sweep of thousands pays a handful of actor start-ups and no per-generation Ray traffic; other
runs get a unit each.

Resources. Every run asks for ``resources: {num_cpus, num_gpus, memory}`` (fractional GPUs
allowed: four small MNIST loops can share a GPU at ``num_gpus: 0.25``). Runs are grouped by
what they ask for and each group gets its own pool of actors of that shape; a worker runs its
generator on the device Ray assigned it (``cuda`` when it holds a GPU share, else ``cpu``).
On a local Ray instance a pool is sized to what fits; on a cluster (``--address``) a pool asks
for one actor per unit, so the pending demand makes the autoscaler add GPU nodes, and units only
go to actors that have started. What fits is counted per node (:mod:`madlab.placement`); a shape
that no alive node fits is waited for up to ``$MADLAB_PLACEMENT_TIMEOUT_S`` and then its runs fail
with one line. A worker with a fraction of a GPU caps its share of the card's memory.

Fault tolerance. A generation is published atomically (:mod:`madlab.storage`) and a worker
resumes every run from its last published generation, so redoing a unit is always safe:

* an actor process that dies (node lost, spot preemption, OOM kill) is restarted by Ray and its
  unit retried (``MAX_RESTARTS``); an actor lost for good has its unfinished runs retried one
  by one in fresh actors (``MAX_ATTEMPTS``) before they are marked failed;
* a driver killed outright takes its actors with it; started again it skips every published
  generation and redoes at most one generation per run;
* a run that raises (NaN loss, bad data) is recorded in its FAILED marker and the table, and
  the other runs go on. Failures are not retried within a sweep; running the command again does.

Fault injection for tests (environment variable ``MADLAB_FAULT``), faults separated by ``;``,
each ``MODE:RUN:VALUE`` with RUN a run id or a glob (``*``):
``kill:RUN:T`` the worker process exits hard before generation T (once per run),
``crash:RUN:T`` the same, every time (a run that always kills its worker), ``raise:RUN:T``
generation T raises (every time), ``sleep:RUN:S`` sleep S seconds before every generation (makes
cheap runs slow enough to interrupt). ``MADLAB_MAX_RESTARTS`` overrides ``MAX_RESTARTS``.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from madlab import __version__
from madlab.config import RunConfig, Spec
from madlab.errors import MadlabError, RunFailed
from madlab.placement import PlacementWatch, alive_nodes, cap_gpu_memory, capacity, describe, describe_nodes, worker_placement
from madlab.provenance import check_resume, config_record
from madlab.registry import get_generator_class
from madlab.storage import Location, RunStore
from madlab.table import run_rows, write_table

FAULT_ENV = "MADLAB_FAULT"
TABLE_EVERY_S = 60.0
#: how often a worker sends progress to the driver (never per generation for cheap runs)
PROGRESS_FLUSH_S = 2.0
#: times Ray restarts a dead actor process and retries its unit
MAX_RESTARTS = 4
#: times a run is tried in a fresh actor after an actor was lost for good
MAX_ATTEMPTS = 2
#: on a cluster, the most actors one pool asks for at once (pending ones drive the autoscaler)
MAX_ACTORS_PER_POOL = 256


@dataclass
class Job:
    run_id: str
    config: dict
    swept: dict
    run_dir: str
    sweep: str

    @property
    def generations(self) -> int:
        return self.config["loop"]["generations"]

    @property
    def resources(self) -> tuple[float, float, int | None]:
        res = self.config.get("resources") or {}
        return (float(res.get("num_cpus", 1.0)), float(res.get("num_gpus", 0.0)), res.get("memory"))

    def rows(self) -> list[dict]:
        return run_rows(self.run_dir, self.config, self.swept, self.sweep)


@dataclass
class Outcome:
    run_id: str
    status: str  # "ok" | "failed"
    error: str | None
    rows: list = field(default_factory=list)
    last_done: int = 0
    seconds: float = 0.0  # wall time in the worker for this call
    compute: float = 0.0  # of which fit + sample + metrics (from the DONE records)
    generations_run: int = 0  # generations computed in this call (not resumed)
    timings: dict = field(default_factory=dict)  # seconds per step phase (data, fit, sample, metrics, publish), summed
    window: tuple = ()  # (start, end) wall-clock time.time() of this call in the worker


# ---------------------------------------------------------------------------- fault injection


@dataclass(frozen=True)
class Fault:
    mode: str
    run: str
    value: float


def parse_faults(spec: str | None) -> list[Fault]:
    if not spec:
        return []
    faults = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            mode, run, value = part.rsplit(":", 2)
            if mode not in ("kill", "crash", "raise", "sleep"):
                raise ValueError
            faults.append(Fault(mode, run, float(value)))
        except ValueError:
            raise MadlabError(f"{FAULT_ENV}={spec!r}: expected MODE:RUN:VALUE with MODE kill, crash, raise or sleep, "
                              f"e.g. kill:*:3") from None
    return faults


def _fault_hook(spec: str | None):
    faults = parse_faults(spec)
    if not faults:
        return None

    def hook(loop, t):
        store = loop.store
        for fault in faults:
            if not fnmatch.fnmatchcase(store.name, fault.run):
                continue
            if fault.mode == "sleep":
                time.sleep(fault.value)
            elif t == int(fault.value) and fault.mode == "raise":
                raise RunFailed(f"injected failure at generation {t}")
            elif t == int(fault.value) and (fault.mode == "crash" or (
                    fault.mode == "kill" and store.touch_marker(f"fault-kill-{t}"))):
                os._exit(17)  # as abrupt as a node dying: no cleanup, no exception
    return hook


# ---------------------------------------------------------------------------- worker side


def run_jobs(jobs: list[Job], device: str = "cpu", fault: str | None = None, report=None) -> list[Outcome]:
    """Run (or resume) each job to completion; failures are recorded, never raised.

    ``report(run_id, generation)`` is called after each published generation.
    """
    from madlab.loop import Loop

    hook = _fault_hook(fault)
    outcomes = []
    for job in jobs:
        store = RunStore(job.run_dir)
        status, error = "ok", None
        counters = {"compute": 0.0, "n": 0}
        timings: dict[str, float] = {}

        def on_generation(t, record, counters=counters, timings=timings, run_id=job.run_id):
            s = record["seconds"]
            counters["compute"] += s["fit"] + s["sample"] + s["metrics"]
            counters["n"] += 1
            for phase, seconds in s.items():
                timings[phase] = timings.get(phase, 0.0) + seconds
            if report is not None:
                report(run_id, t)

        start, started_at = time.perf_counter(), time.time()
        try:
            config = RunConfig.model_validate(job.config)
            loop = Loop(config, job.run_dir, device=config.metrics.device or device,
                        cache_dir=store.cache_dir, fault_hook=hook)
        except Exception as exc:  # e.g. a dataset missing on this node: the run cannot start
            status, error = "failed", f"{type(exc).__name__}: {exc}".strip()
            store.mark_failed(store.last_done() + 1, error)
        else:
            try:
                loop.run(on_generation=on_generation)
            except RunFailed as exc:
                status, error = "failed", str(exc)
        outcomes.append(Outcome(job.run_id, status, error, job.rows(), store.last_done(),
                                time.perf_counter() - start, counters["compute"], counters["n"], timings,
                                window=(started_at, time.time())))
    return outcomes


class _Reporter:
    """Batches (run, generation) progress and sends it to the tracker at most every few seconds."""

    def __init__(self, tracker):
        self.tracker, self.pending, self.sent_at = tracker, {}, time.monotonic()

    def __call__(self, run_id: str, t: int) -> None:
        self.pending[run_id] = t
        if time.monotonic() - self.sent_at >= PROGRESS_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.tracker is not None:
            self.tracker.update.remote(self.pending)
        self.pending, self.sent_at = {}, time.monotonic()


@functools.lru_cache(maxsize=None)
def _remote_classes():
    import ray

    @ray.remote
    class LoopWorker:
        """One process that runs units of jobs on the device Ray assigned it."""

        def __init__(self, num_cpus: float, num_gpus: float = 0.0):
            import torch

            torch.set_num_threads(max(1, int(num_cpus)))
            gpus = ray.get_gpu_ids()
            self.device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
            self.memory_fraction = cap_gpu_memory(num_gpus) if self.device == "cuda" else None

        def ready(self) -> str:
            return self.device

        def placement(self) -> dict:
            return worker_placement(self.device, self.memory_fraction)

        def run(self, jobs, fault, tracker=None):
            reporter = _Reporter(tracker)
            try:
                return run_jobs(jobs, device=self.device, fault=fault, report=reporter)
            finally:
                reporter.flush()

    @ray.remote(num_cpus=0)
    class ProgressTracker:
        """Last published generation of each run, as reported by the workers."""

        def __init__(self):
            self.done = {}

        def update(self, done: dict) -> None:
            self.done.update(done)

        def snapshot(self) -> dict:
            return self.done

    return LoopWorker, ProgressTracker


# ---------------------------------------------------------------------------- driver side


class Progress:
    """One status line: runs and generations done / total, failures, elapsed, ETA.

    On a terminal the line is redrawn in place; in a log it is printed at most every
    ``every`` seconds, so a day-long run gives a readable, bounded log.
    """

    def __init__(self, total_runs: int, total_generations: int, stream=None, every: float = 10.0):
        self.total_runs, self.total_generations = total_runs, total_generations
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self.start = time.monotonic()
        self.last_print = -math.inf
        self.baseline = None

    def due(self) -> bool:
        return time.monotonic() - self.last_print >= (1.0 if self.tty else self.every)

    def update(self, runs_done: int, generations_done: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.baseline is None:
            self.baseline = generations_done
        self.last_print = now
        elapsed = now - self.start
        rate_done = generations_done - self.baseline
        remaining = self.total_generations - generations_done
        eta = _duration(elapsed / rate_done * remaining) if rate_done > 0 and remaining > 0 else "-"
        line = (f"[madlab] runs {runs_done}/{self.total_runs}  generations {generations_done}/"
                f"{self.total_generations}  failed {failed}  elapsed {_duration(elapsed)}  eta {eta}")
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def results_location(out_dir) -> Location:
    """The results location, or a MadlabError naming ``--out`` (unknown scheme, missing driver)."""
    try:
        return Location(out_dir)
    except (ValueError, ImportError) as exc:
        raise MadlabError(f"--out {out_dir}: {exc}") from None


def plan_jobs(spec: Spec, out_dir) -> list[Job]:
    """The jobs of a spec (writes nothing)."""
    location = out_dir if isinstance(out_dir, Location) else results_location(out_dir)
    name = spec.runs[0].config.name
    return [Job(run.run_id, run.config.model_dump(mode="json"), run.swept,
                location.join(f"runs/{run.run_id}"), name) for run in spec.runs]


def prepare(spec: Spec, out_dir, command: str, jobs: list[Job] | None = None) -> list[Job]:
    """Create the results folder and each run's resolved config (idempotent)."""
    location = out_dir if isinstance(out_dir, Location) else results_location(out_dir)
    jobs = jobs if jobs is not None else plan_jobs(spec, location)
    records = {job.run_id: config_record(job.config, job.swept) for job in jobs}
    for job in jobs:  # a resume over a different resolved config is refused before anything is written
        if location.exists(f"runs/{job.run_id}/config.json"):
            check_resume(job.run_id, location.read_json(f"runs/{job.run_id}/config.json"), records[job.run_id])
    try:
        location.makedirs("runs")
    except OSError as exc:
        raise MadlabError(f"--out {out_dir}: cannot create results folder ({exc.strerror})") from None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    created = location.read_json("run.json").get("created", now) if location.exists("run.json") else now
    files = {"run.json": json.dumps({
        "name": spec.runs[0].config.name, "spec": spec.path, "command": command, "created": created,
        "updated": now, "madlab_version": __version__, "runs": [r.run_id for r in spec.runs],
    }, indent=1, sort_keys=True).encode()}
    if spec.path and Path(spec.path).is_file():
        files["spec.yaml"] = Path(spec.path).read_bytes()
    for job in jobs:
        location.makedirs(f"runs/{job.run_id}")
        files[f"runs/{job.run_id}/config.json"] = json.dumps(records[job.run_id], indent=1, sort_keys=True).encode()
    location.write_many(files)
    return jobs


def _scan_done(location: Location, jobs: list[Job]) -> dict[str, int]:
    """Last published generation of every run; one listing on an object store."""
    if location.local:
        return {job.run_id: RunStore(job.run_dir).last_done() for job in jobs}
    found: dict[str, set[int]] = {}
    for rel in location.glob("runs/*/gen-*/DONE"):
        _, run_id, gen, _ = rel.split("/")
        if gen[4:].isdigit():
            found.setdefault(run_id, set()).add(int(gen[4:]))
    done = {}
    for job in jobs:
        t, gens = 0, found.get(job.run_id, set())
        while t + 1 in gens:
            t += 1
        done[job.run_id] = t
    return done


@dataclass
class Summary:
    out_dir: str
    table: str
    runs: int
    failed: list[Outcome]
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass
class _Pool:
    """Actors of one resource shape and the units waiting for them."""

    resources: tuple
    options: dict
    queue: list
    target: int
    actors: list = field(default_factory=list)
    idle: list = field(default_factory=list)
    starting: dict = field(default_factory=dict)  # ready-ref -> actor
    start_failures: int = 0


class Runner:
    def __init__(self, spec: Spec, out_dir: str | None = None, *, command: str = "madlab run",
                 address: str | None = None, use_ray: bool = True, workers: int | None = None,
                 stream=None, progress_every: float = 10.0):
        self.spec = spec
        self.out_dir = str(out_dir or spec.out)
        self.command = command
        self.address, self.use_ray, self.workers = address, use_ray, workers
        self.stream = stream or sys.stdout
        self.progress_every = progress_every
        self.fault = os.environ.get(FAULT_ENV) or None
        parse_faults(self.fault)

    def units(self, jobs: list[Job], n_workers: int) -> list[list[Job]]:
        is_cheap = [get_generator_class(j.config["generator"]["name"]).cheap for j in jobs]
        cheap = [j for j, c in zip(jobs, is_cheap) if c]
        heavy = [[j] for j, c in zip(jobs, is_cheap) if not c]
        size = max(1, math.ceil(len(cheap) / (4 * max(1, n_workers))))
        return heavy + [cheap[i:i + size] for i in range(0, len(cheap), size)]

    def run(self) -> Summary:
        start = time.monotonic()
        location = results_location(self.out_dir)
        jobs = plan_jobs(self.spec, location)
        done_before = _scan_done(location, jobs)
        pending = [j for j in jobs if done_before[j.run_id] < j.generations]
        if pending and self.use_ray:
            self._connect(pending)  # refuses impossible resource requests before writing anything
        prepare(self.spec, location, self.command, jobs)

        outcomes: dict[str, Outcome] = {}
        pending_ids = {j.run_id for j in pending}
        for job in jobs:
            if job.run_id not in pending_ids:
                outcomes[job.run_id] = Outcome(job.run_id, "ok", None, job.rows(), job.generations)
        generations = dict(done_before)
        progress = Progress(len(jobs), sum(j.generations for j in jobs), self.stream, self.progress_every)
        state = {"table_at": time.monotonic(), "dirty": False, "tracker": None}

        def report(force: bool = False):
            if state["dirty"] and time.monotonic() - state["table_at"] > TABLE_EVERY_S:
                self._write(location, outcomes, jobs)  # partial results for `madlab report` while running
                state.update(table_at=time.monotonic(), dirty=False)
            if not (force or progress.due()):
                return
            if state["tracker"] is not None:
                import ray

                for run_id, t in ray.get(state["tracker"].snapshot.remote()).items():
                    generations[run_id] = max(generations.get(run_id, 0), t)
            failed = sum(o.status == "failed" for o in outcomes.values())
            progress.update(len(outcomes), sum(generations.values()), failed, force=force)

        def finish(results: list[Outcome]):
            for outcome in results:
                outcomes[outcome.run_id] = outcome
                generations[outcome.run_id] = outcome.last_done
            state["dirty"] = True

        def on_generation(run_id: str, t: int):
            generations[run_id] = t
            report()

        report(force=True)
        if pending:
            if self.use_ray:
                self._run_ray(pending, finish, report, state)
            else:
                for unit in self.units(pending, 1):
                    finish(run_jobs(unit, fault=self.fault, report=on_generation))
                    report()
        table = self._write(location, outcomes, jobs)
        report(force=True)
        failed = [o for o in outcomes.values() if o.status == "failed"]
        return Summary(location.uri, table, len(jobs), failed, time.monotonic() - start,
                       [outcomes[j.run_id] for j in jobs if j.run_id in outcomes])

    def _write(self, location: Location, outcomes: dict[str, Outcome], jobs: list[Job]) -> str:
        rows = [row for job in jobs if job.run_id in outcomes for row in outcomes[job.run_id].rows]
        return write_table(location, rows)

    # ------------------------------------------------------------------ Ray
    def _connect(self, pending: list[Job]) -> None:
        import ray

        if not ray.is_initialized():
            _init_ray(self.address)
        nodes = alive_nodes()
        for resources in sorted({j.resources for j in pending}, key=str):
            if capacity(resources, nodes) == 0:
                wanted, have = describe(resources), describe_nodes(nodes)
                if self.address is None:
                    raise MadlabError(f"resources: a run asks for {wanted} but the local Ray instance has {have}; "
                                      f"lower resources.* or use --address to reach a cluster that has them")
                self.stream.write(f"[madlab] waiting for the cluster to add nodes for runs with {wanted} "
                                  f"(it has {have} now)\n")

    def _run_ray(self, pending: list[Job], finish, report, state) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        worker_cls, tracker_cls = _remote_classes()
        # on the driver's node: losing another node must not take the progress tracker with it
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        tracker = tracker_cls.options(scheduling_strategy=here).remote()
        state["tracker"] = tracker
        nodes = alive_nodes()
        watch = PlacementWatch(stream=self.stream)
        groups: dict[tuple, list[Job]] = {}
        for job in pending:
            groups.setdefault(job.resources, []).append(job)
        pools = []
        restarts = int(os.environ.get("MADLAB_MAX_RESTARTS", MAX_RESTARTS))
        for resources, jobs in groups.items():
            num_cpus, num_gpus, memory = resources
            fits = max(1, capacity(resources, nodes))
            units = self.units(jobs, self.workers or fits)
            target = min(len(units), self.workers or (MAX_ACTORS_PER_POOL if self.address else fits))
            options = {"num_cpus": num_cpus, "num_gpus": num_gpus,
                       "max_restarts": restarts, "max_task_retries": restarts}
            if memory:
                options["memory"] = memory
            pools.append(_Pool(resources, options, units, target))

        attempts: dict[str, int] = {}
        in_flight: dict = {}  # ref -> (pool, actor, unit or None while starting)

        def start_actor(pool: _Pool):
            actor = worker_cls.options(**pool.options).remote(pool.resources[0], pool.resources[1])
            ref = actor.ready.remote()
            pool.actors.append(actor)
            pool.starting[ref] = actor
            in_flight[ref] = (pool, actor, None)

        def drop(pool: _Pool, actor) -> None:
            if actor in pool.actors:
                pool.actors.remove(actor)
            ray.kill(actor, no_restart=True)

        def give_up(jobs: list[Job], error: str) -> None:
            for job in jobs:
                store = RunStore(job.run_dir)
                store.mark_failed(store.last_done() + 1, error)
            finish([Outcome(j.run_id, "failed", error, j.rows(), RunStore(j.run_dir).last_done()) for j in jobs])

        for pool in pools:
            for _ in range(pool.target):
                start_actor(pool)
        try:
            while True:
                for pool in pools:
                    while pool.queue and pool.idle:
                        actor, unit = pool.idle.pop(), pool.queue.pop(0)
                        in_flight[actor.run.remote(unit, self.fault, tracker)] = (pool, actor, unit)
                    if not pool.queue:  # free the resources for the other pools
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
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=min(self.progress_every, 5.0))
                for ref in ready:
                    pool, actor, unit = in_flight.pop(ref)
                    if unit is None:  # an actor finished starting
                        pool.starting.pop(ref, None)
                        try:
                            ray.get(ref)
                            pool.idle.append(actor)
                        except (RayActorError, RayTaskError) as exc:
                            drop(pool, actor)
                            pool.start_failures += 1
                            if pool.start_failures > MAX_RESTARTS:
                                give_up([j for u in pool.queue for j in u],
                                        f"worker could not start: {str(exc).splitlines()[0]}")
                                pool.queue.clear()
                            elif pool.queue and len(pool.actors) < pool.target:
                                start_actor(pool)
                        continue
                    try:
                        finish(ray.get(ref))
                        pool.idle.append(actor)
                    except (RayActorError, WorkerCrashedError) as exc:
                        drop(pool, actor)
                        for job in unit:
                            if RunStore(job.run_dir).last_done() >= job.generations:
                                finish([Outcome(job.run_id, "ok", None, job.rows(), job.generations)])
                            elif attempts.get(job.run_id, 0) + 1 < MAX_ATTEMPTS:
                                attempts[job.run_id] = attempts.get(job.run_id, 0) + 1
                                pool.queue.append([job])  # alone, so one bad run cannot sink its batch
                            else:
                                give_up([job], f"worker died repeatedly ({type(exc).__name__})")
                        if pool.queue and len(pool.actors) < pool.target:
                            start_actor(pool)
                    except RayTaskError as exc:  # a bug escaped run_jobs: record it, keep the sweep going
                        give_up(unit, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                        pool.idle.append(actor)
                for shape, reason in watch.expired([p.resources for p in pools if p.queue or p.actors]):
                    for pool in [p for p in pools if p.resources == shape]:
                        stuck = [j for u in pool.queue for j in u]
                        for ref, (owner, actor, unit) in list(in_flight.items()):
                            if owner is pool:
                                in_flight.pop(ref)
                                stuck += unit or []
                        for actor in list(pool.actors):
                            drop(pool, actor)
                        pool.queue.clear(), pool.idle.clear(), pool.starting.clear()
                        give_up([j for j in stuck if RunStore(j.run_dir).last_done() < j.generations], reason)
                        finish([Outcome(j.run_id, "ok", None, j.rows(), j.generations) for j in stuck
                                if RunStore(j.run_dir).last_done() >= j.generations])
                report()
        finally:
            for pool in pools:
                for actor in list(pool.actors):
                    ray.kill(actor, no_restart=True)
            state["tracker"] = None
            ray.kill(tracker, no_restart=True)


def _init_ray(address: str | None) -> None:
    import logging

    import ray

    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True,
              "configure_logging": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count(), **kwargs)
