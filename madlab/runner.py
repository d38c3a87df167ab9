"""The Ray runner: schedules runs onto actors; all the work is in :mod:`madlab.loop`.

Each unit of work is a list of runs handed to one ``LoopWorker`` actor. Runs of a *cheap*
generator (Gaussian, GMM: milliseconds per generation) are packed many to a unit, so a sweep of
thousands pays a handful of actor start-ups; other runs get a unit each. A worker resumes
every run from its last published generation, so an actor that Ray restarts after a crash, or a
driver started again after being killed, redoes at most one generation per run.
"""
from __future__ import annotations

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
from madlab.registry import get_generator_class
from madlab.storage import RunStore, atomic_write_bytes, atomic_write_json
from madlab.table import run_rows, write_table

#: Environment variable of the fault-injection hook, ``MODE:RUN:GENERATION`` with MODE ``kill``
#: (the worker process exits hard before that generation, once) or ``raise`` (the generation
#: raises, every time). RUN is a run id or ``*``. Used by the fault-tolerance tests.
FAULT_ENV = "MADLAB_FAULT"
TABLE_EVERY_S = 60.0


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


@dataclass
class Outcome:
    run_id: str
    status: str  # "ok" | "failed"
    error: str | None
    rows: list = field(default_factory=list)


# ---------------------------------------------------------------------------- worker side


def _fault_hook(spec: str | None, marker_dir: str):
    if not spec:
        return None
    try:
        mode, run, generation = spec.split(":")
        generation = int(generation)
    except ValueError:
        raise MadlabError(f"{FAULT_ENV}={spec!r}: expected MODE:RUN:GENERATION, e.g. kill:*:3") from None

    def hook(loop, t):
        if t != generation or run not in ("*", loop.store.dir.name):
            return
        if mode == "raise":
            raise RunFailed(f"injected failure at generation {t}")
        marker = Path(marker_dir) / f".fault-{loop.store.dir.name}-{t}"
        if mode == "kill" and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os._exit(17)  # as abrupt as a node dying: no cleanup, no exception
    return hook


def run_jobs(jobs: list[Job], device: str = "cpu", fault: str | None = None) -> list[Outcome]:
    """Run (or resume) each job to completion; failures are recorded, never raised."""
    from madlab.loop import Loop

    outcomes = []
    for job in jobs:
        config = RunConfig.model_validate(job.config)
        hook = _fault_hook(fault, str(Path(job.run_dir).parent))
        run_device = config.metrics.device or device
        status, error = "ok", None
        try:
            Loop(config, job.run_dir, device=run_device, fault_hook=hook).run()
        except RunFailed as exc:
            status, error = "failed", str(exc)
        outcomes.append(Outcome(job.run_id, status, error, run_rows(job.run_dir, job.config, job.swept, job.sweep)))
    return outcomes


def _worker_class():
    import ray

    @ray.remote
    class LoopWorker:
        """One process that runs units of jobs on the device Ray assigned it."""

        def __init__(self, num_cpus: float):
            import torch

            torch.set_num_threads(max(1, int(num_cpus)))
            gpus = ray.get_gpu_ids()
            self.device = "cuda" if gpus and torch.cuda.is_available() else "cpu"

        def run(self, jobs, fault):
            return run_jobs(jobs, device=self.device, fault=fault)

    return LoopWorker


# ---------------------------------------------------------------------------- driver side


class Progress:
    """One status line: runs and generations done / total, failures, elapsed, ETA.

    On a terminal the line is redrawn in place; in a log it is printed at most every
    ``every`` seconds, so a day-long run gives a readable, bounded log.
    """

    def __init__(self, total_runs: int, total_generations: int, stream=None, every: float = 10.0):
        self.total_runs, self.total_generations = total_runs, total_generations
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
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


def prepare(spec: Spec, out_dir: str, command: str) -> list[Job]:
    """Create the results folder and each run's resolved config (idempotent)."""
    out = Path(out_dir)
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MadlabError(f"--out {out_dir}: cannot create results folder ({exc.strerror})") from None
    info_path = out / "run.json"
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if info_path.is_file():
        import json

        created = json.loads(info_path.read_text()).get("created", created)
    spec_name = spec.runs[0].config.name
    atomic_write_json(info_path, {
        "name": spec_name, "spec": spec.path, "command": command, "created": created,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "madlab_version": __version__, "runs": [r.run_id for r in spec.runs],
    })
    if spec.path and Path(spec.path).is_file():
        atomic_write_bytes(out / "spec.yaml", Path(spec.path).read_bytes())
    jobs = []
    for run in spec.runs:
        run_dir = out / "runs" / run.run_id
        run_dir.mkdir(exist_ok=True)
        config = run.config.model_dump(mode="json")
        atomic_write_json(run_dir / "config.json", {"config": config, "swept": run.swept})
        jobs.append(Job(run.run_id, config, run.swept, str(run_dir), spec_name))
    return jobs


@dataclass
class Summary:
    out_dir: str
    table: Path
    runs: int
    failed: list[Outcome]
    seconds: float


class Runner:
    def __init__(self, spec: Spec, out_dir: str | None = None, *, command: str = "madlab run",
                 address: str | None = None, use_ray: bool = True, workers: int | None = None,
                 stream=None, progress_every: float = 10.0):
        self.spec = spec
        self.out_dir = out_dir or spec.out
        self.command = command
        self.address, self.use_ray, self.workers = address, use_ray, workers
        self.stream = stream or sys.stdout
        self.progress_every = progress_every
        self.fault = os.environ.get(FAULT_ENV)

    def units(self, jobs: list[Job], n_workers: int) -> list[list[Job]]:
        cheap = [j for j in jobs if get_generator_class(j.config["generator"]["name"]).cheap]
        heavy = [[j] for j in jobs if j not in cheap]
        size = max(1, math.ceil(len(cheap) / (4 * max(1, n_workers))))
        return heavy + [cheap[i:i + size] for i in range(0, len(cheap), size)]

    def run(self) -> Summary:
        start = time.monotonic()
        jobs = prepare(self.spec, self.out_dir, self.command)
        outcomes: dict[str, Outcome] = {}
        pending = []
        for job in jobs:
            store = RunStore(job.run_dir)
            if store.last_done() >= job.generations:
                outcomes[job.run_id] = Outcome(job.run_id, "ok", None, run_rows(job.run_dir, job.config, job.swept, job.sweep))
            else:
                pending.append(job)
        progress = Progress(len(jobs), sum(j.generations for j in jobs), self.stream, self.progress_every)
        state = {"table_at": time.monotonic(), "dirty": False}

        def report(in_flight: list[Job] = (), force=False):
            if state["dirty"] and time.monotonic() - state["table_at"] > TABLE_EVERY_S:
                self._write(outcomes, jobs)  # partial results for `madlab report` while running
                state.update(table_at=time.monotonic(), dirty=False)
            if not (force or progress.due()):
                return
            gens = sum(j.generations for j in jobs if j.run_id in outcomes and outcomes[j.run_id].status == "ok")
            gens += sum(RunStore(j.run_dir).last_done() for j in jobs
                        if j.run_id not in outcomes or outcomes[j.run_id].status != "ok")
            failed = sum(o.status == "failed" for o in outcomes.values())
            progress.update(len(outcomes), gens, failed, force=force)

        def done(results: list[Outcome]):
            for outcome in results:
                outcomes[outcome.run_id] = outcome
            state["dirty"] = True

        report(force=True)
        if pending:
            if self.use_ray:
                self._run_ray(pending, done, report)
            else:
                for unit in self.units(pending, 1):
                    done(run_jobs(unit, fault=self.fault))
                    report()
        table = self._write(outcomes, jobs)
        report(force=True)
        failed = [o for o in outcomes.values() if o.status == "failed"]
        return Summary(self.out_dir, table, len(jobs), failed, time.monotonic() - start)

    def _write(self, outcomes: dict[str, Outcome], jobs: list[Job]) -> Path:
        rows = [row for job in jobs if job.run_id in outcomes for row in outcomes[job.run_id].rows]
        return write_table(self.out_dir, rows)

    def _run_ray(self, pending: list[Job], done, report) -> None:
        import ray

        if not ray.is_initialized():
            _init_ray(self.address)
        resources = RunConfig.model_validate(pending[0].config).resources
        cluster = ray.cluster_resources()
        n_workers = self.workers or max(1, int(cluster.get("CPU", 1) // resources.num_cpus))
        if resources.num_gpus > 0:
            n_workers = min(n_workers, max(1, int(cluster.get("GPU", 0) // resources.num_gpus)))
        units = self.units(pending, n_workers)
        n_workers = min(n_workers, len(units))
        options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                   "max_restarts": 3, "max_task_retries": 3}
        if resources.memory:
            options["memory"] = resources.memory
        worker_cls = _worker_class()
        actors = [worker_cls.options(**options).remote(resources.num_cpus) for _ in range(n_workers)]
        queue = list(units)
        in_flight = {}
        free = list(actors)
        try:
            while queue or in_flight:
                while queue and free:
                    actor, unit = free.pop(), queue.pop(0)
                    in_flight[actor.run.remote(unit, self.fault)] = (actor, unit)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=min(self.progress_every, 5.0))
                for ref in ready:
                    actor, unit = in_flight.pop(ref)
                    try:
                        done(ray.get(ref))
                        free.append(actor)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                        done([Outcome(j.run_id, "failed", f"worker died repeatedly: {type(exc).__name__}",
                                      run_rows(j.run_dir, j.config, j.swept, j.sweep)) for j in unit])
                        free.append(worker_cls.options(**options).remote(resources.num_cpus))
                report([j for _, unit in in_flight.values() for j in unit])
        finally:
            for actor in actors + free:
                ray.kill(actor, no_restart=True)


def _init_ray(address: str | None) -> None:
    import logging

    import ray

    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True,
              "configure_logging": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count(), **kwargs)
