"""The worker side: run (or resume) a list of runs in this process; failures are recorded, never raised.

A *job* is one run of a sweep, as plain data (its resolved config and folder), so it can be
shipped to any process. A *unit* is a list of jobs one worker runs one after another: runs of a
*cheap* generator (Gaussian, GMM: milliseconds per generation) are packed many to a unit, so a
sweep of thousands pays a handful of worker start-ups and no per-generation scheduling
traffic; other runs get a unit each. Cheap vector runs of one shape (``BATCH_MIN_RUNS`` or more)
are assigned to fixed batches when the jobs are planned (:mod:`madlab.engine.batched.plan`); a batch is
one unit, advanced by the vectorised engine (:mod:`madlab.runner.batch_worker`) and retried whole.
"""
from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from madlab.core.errors import RunFailed
from madlab.engine.batched.records import BatchStore, batch_rows
from madlab.engine.ecosystem import Ecosystem, MemberLoop
from madlab.engine.loop import Loop
from madlab.engine.shared_generation import first_generation_key
from madlab.plugins.registry import get_generator_class
from madlab.runner.batch_worker import run_batch
from madlab.runner.faults import fault_hook
from madlab.runner.outcome import Outcome
from madlab.schema.config import RunConfig
from madlab.schema.ecosystem import EcosystemConfig
from madlab.store.storage import Location, RunStore
from madlab.store.table import run_rows


@dataclass
class Job:
    run_id: str
    config: dict
    swept: dict
    run_dir: str
    sweep: str
    #: the batch this run is vectorised in (member run ids in slot order) and the results root
    batch: tuple[str, ...] | None = None
    root: str | None = None
    #: an ecosystem member (madlab.runner.ecosystem): {"ecosystem": config, "seed", "member", "peers"}
    ecosystem: dict | None = None
    #: run only up to this generation (an ecosystem's barrier); None: all of them
    until: int | None = None

    @property
    def generations(self) -> int:
        """The last generation this job is to publish."""
        return self.until or self.config["loop"]["generations"]

    @property
    def resources(self) -> tuple[float, float, int | None]:
        res = self.config.get("resources") or {}
        return (float(res.get("num_cpus", 1.0)), float(res.get("num_gpus", 0.0)), res.get("memory"))

    def rows(self) -> list:
        """The run's table rows (a batched run's as one RowBlock; none for an ecosystem member's
        generation call: its table is the ecosystem's, madlab.runner.ecosystem, and re-reading every
        record after every generation would cost O(generations^2))."""
        if self.ecosystem is not None:
            return []
        if self.batch is not None:
            return [batched_rows([self])[self.run_id]]
        return run_rows(self.run_dir, self.config, self.swept, self.sweep)

    def last_done(self) -> int:
        if self.batch is not None:
            return batched_done([self])[self.run_id]
        return RunStore(self.run_dir).last_done()


def _batch_store(job: "Job"):
    return BatchStore(Location(job.root), list(job.batch))


def batched_rows(jobs: list["Job"]) -> dict:
    """Table rows (one RowBlock each) of batched jobs, reading each batch's records once."""
    by_batch: dict[tuple, list[Job]] = {}
    for job in jobs:
        by_batch.setdefault(job.batch, []).append(job)
    rows = {}
    for batch_jobs in by_batch.values():
        rows.update(batch_rows(_batch_store(batch_jobs[0]), batch_jobs,
                               {j.run_id: RunStore(j.run_dir).failure() for j in batch_jobs}))
    return rows


def batched_done(jobs: list["Job"]) -> dict[str, int]:
    """Last published generation of batched jobs, from their batches' records."""
    done = {}
    for members in {j.batch for j in jobs}:
        job = next(j for j in jobs if j.batch == members)
        done.update(zip(members, (int(t) for t in _batch_store(job).published())))
    return {j.run_id: done[j.run_id] for j in jobs}


def finished(job: Job) -> Outcome:
    """The outcome of a job whose generations are all published."""
    return Outcome(job.run_id, "ok", None, job.rows(), job.generations)


def give_up(jobs: list[Job], error: str) -> list[Outcome]:
    """Record ``error`` in each job's FAILED marker; their outcomes."""
    outcomes = []
    for job in jobs:
        done = job.last_done()
        RunStore(job.run_dir).mark_failed(done + 1, error)
        outcomes.append(Outcome(job.run_id, "failed", error, job.rows(), done))
    return outcomes


def pack(jobs: list[Job], n_workers: int) -> list[list[Job]]:
    """Units of work: one per expensive run, one per batch of vectorised runs (all its members),
    other cheap runs in about four units per worker."""
    batches: dict[tuple, list[Job]] = {}
    for job in jobs:
        if job.batch is not None:
            batches.setdefault(job.batch, []).append(job)
    jobs = [j for j in jobs if j.batch is None]
    is_cheap = [get_generator_class(j.config["generator"]["name"]).cheap for j in jobs]
    cheap = [j for j, c in zip(jobs, is_cheap) if c]
    heavy = [[j] for j in spread_shared_first([j for j, c in zip(jobs, is_cheap) if not c])]
    size = max(1, math.ceil(len(cheap) / (4 * max(1, n_workers))))
    return heavy + list(batches.values()) + [cheap[i:i + size] for i in range(0, len(cheap), size)]


def spread_shared_first(jobs: list[Job]) -> list[Job]:
    """Expensive runs in an order that starts the runs sharing one generation 1
    (:mod:`madlab.engine.shared_generation`) apart: the first run of every group, then the second of
    every group, and so on. Started side by side, the second run of a group would hold a worker
    while it waits for the first to publish the shared generation; started apart, the workers
    train different generation-1 models at once and the followers find theirs ready."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        try:
            key = first_generation_key(RunConfig.model_validate(job.config))
        except Exception:  # a config the key cannot read keeps its own slot; validation already ran
            key = job.run_id
        groups.setdefault(key, []).append(job)
    order = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        order += [g[i] for g in groups.values() if i < len(g)]
    return order


class _Timings:
    """Sums a run's DONE-record timings as its generations are published."""

    def __init__(self, run_id: str, report):
        self.run_id, self.report = run_id, report
        self.compute, self.n, self.phases = 0.0, 0, {}

    def __call__(self, t: int, record: dict) -> None:
        s = record["seconds"]
        self.compute += s["fit"] + s["sample"] + s["metrics"]
        self.n += 1
        for phase, seconds in s.items():
            self.phases[phase] = self.phases.get(phase, 0.0) + seconds
        if self.report is not None:  # what the generation cost here (nothing when adopted from another run)
            self.report(self.run_id, t, 0.0 if record.get("adopted") else float(sum(s.values())))


#: ecosystem members' loops kept between their generations in this process (an ecosystem runs one
#: generation per call): building a loop (components, the evaluator's reference set) per generation cost
#: more than a cheap member's step. A loop's step is pure, so a kept loop computes what a new one would.
MEMBER_LOOPS: OrderedDict = OrderedDict()
MEMBER_LOOPS_KEPT = 256


def _make_loop(job: Job, config: RunConfig, **kwargs) -> Loop:
    """A run's loop, or an ecosystem member's (its plan reads its peers' generations)."""
    if job.ecosystem is None:
        return Loop(config, job.run_dir, **kwargs)
    eco = job.ecosystem
    key = json.dumps([job.run_dir, job.config, eco, kwargs.get("device")], sort_keys=True, default=str)
    if key in MEMBER_LOOPS:
        MEMBER_LOOPS.move_to_end(key)
        loop = MEMBER_LOOPS[key]
        loop._fault_hook = kwargs.get("fault_hook")
        return loop
    planner = Ecosystem(EcosystemConfig.model_validate(eco["ecosystem"]), eco["seed"])
    loop = MemberLoop(config, job.run_dir, ecosystem=planner, member=eco["member"], peers=eco["peers"], **kwargs)
    MEMBER_LOOPS[key] = loop
    while len(MEMBER_LOOPS) > MEMBER_LOOPS_KEPT:
        MEMBER_LOOPS.popitem(last=False)
    return loop


def forget_member_loop(job: Job) -> None:
    """Drop a member's kept loop (after a failure: the next try starts from what is published)."""
    for key in [k for k, loop in MEMBER_LOOPS.items() if loop.store.dir == RunStore(job.run_dir).dir]:
        del MEMBER_LOOPS[key]


def run_jobs(jobs: list[Job], device: str = "cpu", fault: str | None = None, report=None) -> list[Outcome]:
    """Run (or resume) each job to completion; failures are recorded, never raised.

    ``report(run_id, generation, seconds)`` is called after each published generation, with the
    compute seconds it cost in this process.
    """
    hook = fault_hook(fault)
    outcomes = []
    batches: dict[tuple, list[Job]] = {}
    for job in jobs:
        if job.batch is not None:
            batches.setdefault(job.batch, []).append(job)
    for members, batch_jobs in batches.items():
        order = {run_id: i for i, run_id in enumerate(members)}
        batch_jobs = sorted(batch_jobs, key=lambda j: order[j.run_id])
        if [j.run_id for j in batch_jobs] != list(members):
            raise ValueError("a unit must carry every member of its batch")
        outcomes += run_batch(batch_jobs, Location(batch_jobs[0].root), hook, report)
    for job in jobs:
        if job.batch is not None:
            continue
        store = RunStore(job.run_dir)
        status, error = "ok", None
        timings = _Timings(job.run_id, report)
        start, started_at = time.perf_counter(), time.time()
        try:
            config = RunConfig.model_validate(job.config)
            loop = _make_loop(job, config, device=config.metrics.device or device, cache_dir=store.cache_dir,
                              fault_hook=hook)
        except Exception as exc:  # e.g. a dataset missing on this node: the run cannot start
            status, error = "failed", f"{type(exc).__name__}: {exc}".strip()
            store.mark_failed(store.last_done() + 1, error)
        else:
            try:
                loop.run(until=job.until, on_generation=timings)
            except RunFailed as exc:
                status, error = "failed", str(exc)
                forget_member_loop(job)
        outcomes.append(Outcome(job.run_id, status, error, job.rows(), store.last_done(),
                                time.perf_counter() - start, timings.compute, timings.n, timings.phases,
                                window=(started_at, time.time())))
    return outcomes
