"""The driver of a sweep: what is left to do, who runs it, and what the driver knows meanwhile.

    Runner.run():  plan the jobs -> skip what is published -> prepare the folder
                   -> run the rest (Ray tasks, or one after another here with ``--no-ray``)
                   -> write the table

All the work is in :mod:`madlab.loop`; how units reach workers is :mod:`madlab.runner.ray_tasks`.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from madlab.config import Spec
from madlab.eta import CostModel, run_kind
from madlab.registry import get_generator_class
from madlab.runner.faults import FAULT_ENV, parse_faults
from madlab.runner.folder import BATCH_MIN_RUNS, plan_jobs, prepare, results_location, scan_done
from madlab.runner.jobs import Job, Outcome, batched_rows, finished, pack, run_jobs
from madlab.runner.progress import Progress, observe_report, report_of
from madlab.storage import Location
from madlab.table import write_table
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


def prepare_extractors(jobs: list[Job], progress: Progress, *, local: bool) -> "threading.Thread | None":
    """One-time work while the runs start: the pinned LeNet extractor is trained on first use
    (about a minute). Say so rather than sit silent, and on this machine train it here, once, so
    every worker loads the same cached weights; on a cluster each node's first worker does it.

    The training runs in a background thread (it is a pinned child process under the cache's file
    lock) and the runs start at once: a run needs the extractor only for its first metrics, after
    its generation-1 fit, and then waits on the lock; runs on other data never wait. Returns the
    thread, for the caller to join."""
    from madlab.datasets import get_dataset_class

    def uses_lenet(config: dict) -> bool:
        metrics = config.get("metrics") or {}
        if get_dataset_class(config["dataset"]["name"]).kind != "image" or metrics.get("weights_path"):
            return False
        from madlab.features import default_extractor

        return (metrics.get("extractor") or default_extractor(config["dataset"]["name"])) == "lenet-mnist"

    prepare_text_encoders(jobs, progress, local=local)
    if not any(uses_lenet(j.config) for j in jobs):
        return None
    from madlab.features.feature_extractor_lenet import ensure_lenet_weights, lenet_weights_cached, weights_dir

    if lenet_weights_cached():
        return None
    if not local:
        progress.note(f"each cluster node trains the LeNet feature extractor once on first use "
                      f"(~1 min, cached in {weights_dir()} there)")
        return None
    progress.note(f"training the LeNet feature extractor once (~1 min, while the runs start), cached in "
                  f"{weights_dir()}")

    def train() -> None:
        try:
            ensure_lenet_weights()
        except Exception as exc:  # noqa: BLE001 - the runs that need it retry under the lock and fail themselves
            progress.note(f"training the LeNet feature extractor failed here ({type(exc).__name__}: {exc}); "
                          f"the runs that need it will try again")

    thread = threading.Thread(target=train, name="madlab-lenet", daemon=True)
    thread.start()
    return thread


def prepare_text_encoders(jobs: list[Job], progress: Progress, *, local: bool) -> None:
    """The same for token runs that ask for feature metrics: each distinct corpus's ``text-lm`` encoder
    is trained here, once, before the runs start, so every run of the sweep reads one cached file and
    the table carries one encoder hash per corpus (on a cluster each node's first worker trains it,
    bit for bit the same: madlab.features.feature_extractor_text_lm)."""
    from madlab.datasets import get_dataset_class, open_dataset
    from madlab.metrics.text import TEXT_LM_METRICS

    datasets = {}
    for job in jobs:
        names = (job.config.get("metrics") or {}).get("names") or ()
        if get_dataset_class(job.config["dataset"]["name"]).kind == "tokens" and set(names) & set(TEXT_LM_METRICS):
            datasets.setdefault(json.dumps(job.config["dataset"], sort_keys=True), job.config["dataset"])
    if not datasets:
        return
    from madlab.features.feature_extractor_text_lm import encoder_path, ensure_text_lm, weights_dir

    for section in datasets.values():
        dataset = open_dataset(section)
        corpus = dataset.encoder_corpus()
        if encoder_path(corpus, dataset.tokenizer).is_file():
            continue
        if not local:
            progress.note(f"each cluster node trains the text-lm encoder of {dataset.name} once on first use "
                          f"(cached in {weights_dir()} there)")
            continue
        progress.note(f"training the text-lm encoder of {dataset.name} once ({len(corpus)} documents, "
                      f"under a minute), cached in {weights_dir()}")
        ensure_text_lm(corpus, dataset.tokenizer)


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
            from madlab.runner.ray_tasks import connect

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
            from madlab.runner.ray_tasks import run_on_ray

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
