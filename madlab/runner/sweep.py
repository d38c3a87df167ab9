"""The driver of a sweep: what is left to do, who runs it, and what the driver knows meanwhile.

    Runner.run():  plan the jobs -> skip what is published -> prepare the folder
                   -> run the rest (Ray tasks, or one after another here with ``--no-ray``)
                   -> write the table

All the work is in :mod:`madlab.engine.loop`; how units reach workers is :mod:`madlab.runner.ray_tasks`.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from madlab.plugins.registry import get_generator_class
from madlab.runner.eta import CostModel, run_kind
from madlab.runner.faults import FAULT_ENV, parse_faults
from madlab.runner.folder import BATCH_MIN_RUNS, plan_jobs, prepare, results_location, scan_done
from madlab.runner.jobs import Job, batched_rows, finished, pack, run_jobs
from madlab.runner.outcome import Outcome
from madlab.runner.progress import Progress, observe_report, report_of
from madlab.runner.ray_tasks import connect, run_on_ray
from madlab.runner.warmup import prepare_extractors
from madlab.schema.config import Spec
from madlab.store.storage import Location
from madlab.store.table import write_table
from madlab.tracking.dispatch import open_tracking

#: how often the table is rewritten while a sweep runs (for `madlab report` on a live folder)
TABLE_EVERY_S = 60.0
#: the partial table is rewritten at most once per TABLE_DUTY x the last write's duration
TABLE_DUTY = 20.0


@dataclass
class Summary:
    out_dir: str
    table: str
    runs: int
    failed: list[Outcome]
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)


class SweepState:
    """What the driver knows while a sweep runs: each run's outcome and last published generation.

    ``finish`` takes outcomes as workers return them, ``tick`` redraws the progress line and
    rewrites the table now and then; ``poll`` (set by the Ray side) returns the progress the
    workers reported since.
    """

    def __init__(self, location: Location, jobs: list[Job], done: dict[str, int], progress: Progress):
        self.location, self.jobs, self.progress = location, jobs, progress
        self.outcomes: dict[str, Outcome] = {}
        self.generations = dict(done)
        self.table_at, self.dirty = time.monotonic(), False
        self.table_seconds = 0.0  # how long the last table write took
        self.poll = None
        self.tracking = None  # madlab.tracking.dispatch.Dispatcher: trackers fed from what is published

    def finish(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.outcomes[outcome.run_id] = outcome
            self.generations[outcome.run_id] = outcome.last_done
            if self.progress.cost is not None:  # a finished unit's count, whether or not its reports arrived
                self.progress.cost.set_done(outcome.run_id, outcome.last_done)
        self.dirty = True
        if self.tracking is not None:
            self.tracking.finished(outcomes)

    def on_generation(self, run_id: str, t: int, seconds: float = 0.0) -> None:
        self.generations[run_id] = t
        if self.tracking is not None:
            self.tracking.published(run_id, t)
        if self.progress.cost is not None:
            observe_report(self.progress.cost, run_id, report_of(t, seconds))
        self.tick()

    def tick(self, force: bool = False) -> None:
        # at most every TABLE_EVERY_S, and rarer when a write is slow (a 10^6-row table takes seconds
        # of the driver's core, which the workers share): writes cost at most ~1/TABLE_DUTY of it
        if self.dirty and time.monotonic() - self.table_at > max(TABLE_EVERY_S, TABLE_DUTY * self.table_seconds):
            self.write_table()  # partial results for `madlab report` while running
        if not (force or self.progress.due()):
            return
        if self.poll is not None:
            for run_id, report in self.poll().items():
                self.generations[run_id] = max(self.generations.get(run_id, 0), report["t"])
                if self.tracking is not None:
                    self.tracking.published(run_id, report["t"])
                if self.progress.cost is not None:
                    observe_report(self.progress.cost, run_id, report)
        failed = sum(o.status == "failed" for o in self.outcomes.values())
        self.progress.update(len(self.outcomes), sum(self.generations.values()), failed, force=force)

    def write_table(self) -> str:
        start = time.monotonic()
        table = write_table(self.location, [row for job in self.jobs if job.run_id in self.outcomes
                                            for row in self.outcomes[job.run_id].rows])  # dicts, or RowBlocks
        self.table_at, self.dirty = time.monotonic(), False
        self.table_seconds = self.table_at - start
        return table

    def summary(self, seconds: float) -> Summary:
        table = self.write_table()
        outcomes = [self.outcomes[j.run_id] for j in self.jobs if j.run_id in self.outcomes]
        return Summary(self.location.uri, table, len(self.jobs), [o for o in outcomes if o.status == "failed"],
                       seconds, outcomes)


class Runner:
    def __init__(self, spec: Spec, out_dir: str | None = None, *, command: str = "madlab run",
                 address: str | None = None, use_ray: bool = True, workers: int | None = None,
                 stream=None, progress_every: float = 10.0, batch_min_runs: int = BATCH_MIN_RUNS):
        self.spec = spec
        self.out_dir = str(out_dir or spec.out)
        self.command = command
        self.address, self.use_ray, self.workers = address, use_ray, workers
        self.stream = stream or sys.stdout
        self.progress_every = progress_every
        self.batch_min_runs = batch_min_runs
        self.fault = os.environ.get(FAULT_ENV) or None
        parse_faults(self.fault)

    def run(self) -> Summary:
        start = time.monotonic()
        location = results_location(self.out_dir)
        jobs = plan_jobs(self.spec, location, self.batch_min_runs)
        done = scan_done(location, jobs)
        pending = [j for j in jobs if done[j.run_id] < j.generations]
        pending_batches = {j.batch for j in pending if j.batch is not None}  # a batch runs with all its members
        pending = [j for j in jobs if done[j.run_id] < j.generations or j.batch in pending_batches]
        if pending and self.use_ray:
            connect(pending, self.address, self.stream)  # refuses impossible resources before writing anything
        prepare(self.spec, location, self.command, jobs)
        cost = CostModel({j.run_id: run_kind(j.config, get_generator_class(j.config["generator"]["name"]).cheap)
                          for j in jobs}, {j.run_id: j.generations for j in jobs}, done)
        progress = Progress(len(jobs), sum(j.generations for j in jobs), self.stream, self.progress_every, cost)
        training = prepare_extractors(pending, progress, local=not (self.use_ray and self.address))
        sweep = SweepState(location, jobs, done, progress)
        sweep.tracking = open_tracking(self.spec.tracking, location.uri, self.spec.runs[0].config.name, jobs, done,
                                       stream=self.stream)
        pending_ids = {j.run_id for j in pending}
        finished_batched = batched_rows([j for j in jobs if j.run_id not in pending_ids and j.batch is not None])
        sweep.finish([finished(j) if j.batch is None else Outcome(j.run_id, "ok", None, [finished_batched[j.run_id]],
                                                                  j.generations)
                      for j in jobs if j.run_id not in pending_ids])
        sweep.tick(force=True)
        if pending and self.use_ray:
            run_on_ray(pending, sweep, fault=self.fault, workers=self.workers, wait_s=min(self.progress_every, 5.0))
        elif pending:
            for unit in pack(pending, 1):
                sweep.finish(run_jobs(unit, fault=self.fault, report=sweep.on_generation))
                sweep.tick()
        if training is not None:
            training.join()
        summary = sweep.summary(time.monotonic() - start)
        if sweep.tracking is not None:  # the trackers take the last points (an exception leaves them to a resume)
            sweep.tracking.close()
        sweep.tick(force=True)
        return summary
