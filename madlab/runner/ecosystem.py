"""Running ecosystems: one generation at a time, a barrier between them, one task per member.

    EcoRunner.run():  jobs (one per member of every ecosystem) -> refuse a different stored run
                      -> for t = 1..G: the members not yet at t run to t (Ray tasks through
                         madlab.runner.ray_tasks: the same resources, retries and packing as runs;
                         or one after another with --no-ray) -> barrier -> each ecosystem's
                         generation record (plans, cross-member and pool metrics)
                      -> the table: every member's rows (``member`` column) + the ecosystem rows

Members are runs in ``DIR/runs/<eco_id>--<member>/`` (the table's ``seed`` is a member's own seed,
``eco_seed`` the ecosystem's); an ecosystem's generation records are
``DIR/ecosystems/<eco_id>/gen-XXXX.json``, written once every member has published (atomic,
recomputed if missing, so kill and resume give the same table). A member that fails stops its
ecosystem at that generation (its peers need it); the other ecosystems go on.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from madlab import __version__
from madlab.core.errors import MadlabError
from madlab.datasets import open_dataset
from madlab.engine.ecosystem import Ecosystem, generation_record
from madlab.engine.loop import compute_threads, derive_seed
from madlab.runner.folder import check_resumable, results_location
from madlab.runner.jobs import Job, pack, run_jobs
from madlab.runner.progress import Progress
from madlab.runner.ray_tasks import connect, run_on_ray
from madlab.runner.sweep import SweepState, Summary
from madlab.schema.config import eval_size
from madlab.schema.ecosystem import EcoRun, EcoSpec
from madlab.store.storage import CONFIG, RUN_INFO, RUNS, TABLE, RunStore, run_folder
from madlab.store.table import common_columns, make_frame, run_rows

ECOSYSTEMS = "ecosystems"


def member_jobs(spec: EcoSpec, location) -> list[Job]:
    jobs = []
    for eco in spec.runs:
        peers = {name: location.join(run_folder(eco.member_id(name))) for name in eco.members}
        for name, config in eco.members.items():
            jobs.append(Job(eco.member_id(name), config.model_dump(mode="json"), {**eco.swept, "member": name},
                            peers[name], eco.name,
                            ecosystem={"ecosystem": eco.ecosystem.model_dump(mode="json"), "seed": eco.seed,
                                       "member": name, "peers": peers, "eco_id": eco.eco_id}))
    return jobs


def prepare_folder(spec: EcoSpec, location, command: str, jobs: list[Job]) -> None:
    records = check_resumable(jobs, location)  # a different stored member run is refused, one line
    try:
        location.makedirs(RUNS)
    except OSError as exc:
        raise MadlabError(f"--out {location.uri}: cannot create results folder ({exc.strerror})") from None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    created = location.read_json(RUN_INFO).get("created", now) if location.exists(RUN_INFO) else now
    files = {RUN_INFO: json.dumps({"name": spec.runs[0].name, "spec": spec.path, "command": command, "created": created,
                                   "updated": now, "madlab_version": __version__, "kind": "ecosystem",
                                   "ecosystems": [e.eco_id for e in spec.runs],
                                   "runs": [j.run_id for j in jobs]}, indent=1, sort_keys=True).encode()}
    if spec.path and Path(spec.path).is_file():
        files["spec.yaml"] = Path(spec.path).read_bytes()
    for job in jobs:
        record = {**records[job.run_id], "ecosystem": {k: v for k, v in job.ecosystem.items() if k != "peers"}}
        files[f"{run_folder(job.run_id)}/{CONFIG}"] = json.dumps(record, indent=1, sort_keys=True).encode()
    location.write_many(files)


class EcoSweepState(SweepState):
    """The runner's sweep state; its (periodic and final) table is the ecosystem table."""

    spec: EcoSpec

    def write_table(self) -> str:
        start = time.monotonic()
        table = write_eco_table(self.location, self.spec, self.jobs)
        self.table_at, self.dirty = time.monotonic(), False
        self.table_seconds = self.table_at - start
        return table


class EcoRunner:
    def __init__(self, spec: EcoSpec, out_dir: str | None = None, *, command: str = "madlab run",
                 address: str | None = None, use_ray: bool = True, workers: int | None = None, stream=None,
                 fault: str | None = None):
        self.spec, self.out_dir = spec, str(out_dir or spec.out)
        self.command, self.address, self.use_ray, self.workers = command, address, use_ray, workers
        self.stream = stream or sys.stdout
        self.fault = fault

    def run(self) -> Summary:
        start = time.monotonic()
        location = results_location(self.out_dir)
        jobs = member_jobs(self.spec, location)
        if self.use_ray:
            connect(jobs, self.address, self.stream)
        prepare_folder(self.spec, location, self.command, jobs)
        by_eco = {eco.eco_id: [j for j in jobs if j.ecosystem["eco_id"] == eco.eco_id] for eco in self.spec.runs}
        stopped: set[str] = set()
        sweep = EcoSweepState(location, jobs, {}, Progress(len(jobs), sum(j.generations for j in jobs), self.stream, 10.0))
        sweep.spec = self.spec
        # --no-ray: every member step runs here, so the thread limits are set once (compute_threads is
        # re-entrant), not once per member and generation; Ray workers set them per task as for runs
        threads = self.spec.runs[0].resources.num_cpus if not self.use_ray else None
        with compute_threads(threads) if threads else nullcontext():
            for t in range(1, max(e.ecosystem.generations for e in self.spec.runs) + 1):
                live = [e for e in self.spec.runs if e.eco_id not in stopped and t <= e.ecosystem.generations]
                self._generation(t, live, by_eco, sweep, stopped, location)
        table = sweep.write_table()
        outcomes = [sweep.outcomes[j.run_id] for j in jobs if j.run_id in sweep.outcomes]
        return Summary(location.uri, table, len(jobs), [o for o in outcomes if o.status == "failed"],
                       time.monotonic() - start, outcomes)

    def _generation(self, t: int, ecosystems: list[EcoRun], by_eco: dict, sweep, stopped: set, location) -> None:
        """Generation t of every live ecosystem: its members' tasks, the barrier, the records."""
        pending = []
        for eco in ecosystems:
            for job in by_eco[eco.eco_id]:
                job.until = t
                if RunStore(job.run_dir).last_done() < t:
                    pending.append(job)
        barrier = time.monotonic()
        if pending and self.use_ray:
            run_on_ray(pending, sweep, fault=self.fault, workers=self.workers, wait_s=5.0)
        elif pending:
            for unit in pack(pending, 1):
                sweep.finish(run_jobs(unit, fault=self.fault))
        for eco in ecosystems:
            members = by_eco[eco.eco_id]
            if any(RunStore(j.run_dir).last_done() < t for j in members):
                stopped.add(eco.eco_id)  # a member failed: its peers cannot go on without it
                continue
            write_generation_record(location, eco, t, time.monotonic() - barrier)


def _record_path(eco_id: str, t: int) -> str:
    return f"{ECOSYSTEMS}/{eco_id}/gen-{t:04d}.json"


def write_generation_record(location, eco: EcoRun, t: int, barrier_s: float) -> None:
    """The ecosystem's record of generation t, unless already written (a pure function of the
    published generations, timings aside)."""
    rel = _record_path(eco.eco_id, t)
    if location.exists(rel):
        return
    first = next(iter(eco.members.values()))
    dataset = open_dataset(eco.dataset)
    stores = {name: RunStore(location.join(run_folder(eco.member_id(name)))) for name in eco.members}
    real = None
    if eco.ecosystem.pool is not None and dataset.kind == "vector":
        real = dataset.eval_set(eval_size(first), seed=derive_seed(eco.seed, "eval")).x
    record = generation_record(Ecosystem(eco.ecosystem, eco.seed), dataset.kind, stores, t, real)
    # timings ride along (not in the table, which must not change on resume): the barrier's wall time and
    # each member's step seconds; idle = what the members' slots waited for the slowest (zero on one core
    # with --no-ray, where the members run one after another and the wall time is their sum)
    seconds = {name: float(sum(stores[name].record(t)["seconds"].values())) for name in eco.members}
    record["barrier_seconds"] = barrier_s
    record["member_seconds"] = seconds
    record["barrier_idle_seconds"] = float(sum(max(seconds.values()) - s for s in seconds.values()))
    location.write_json(rel, record)


def ecosystem_rows(location, eco: EcoRun) -> list[dict]:
    """The ecosystem-level rows: cross-member distances (``member`` = "a~b", or "*" for their mean)
    and pool metrics (``member`` = "pool"), per generation."""
    first = next(iter(eco.members.values())).model_dump(mode="json")
    common = common_columns(eco.eco_id, first, eco.swept, eco.name, None)
    common.update(generator="ecosystem", ecosystem=eco.eco_id, eco_seed=eco.seed)
    rows = []
    for t in range(1, eco.ecosystem.generations + 1):
        if not location.exists(_record_path(eco.eco_id, t)):
            break
        record = location.read_json(_record_path(eco.eco_id, t))
        for name, pairs in sorted(record["cross"].items()):
            for pair, value in sorted(pairs.items()):
                rows.append({**common, "generation": t, "member": "*" if pair == "mean" else pair,
                             "metric": name + ("_mean" if pair == "mean" else ""), "value": value})
        for metric, value in sorted(record["pool"].items()):
            rows.append({**common, "generation": t, "member": "pool", "metric": metric, "value": value})
    return rows


def write_eco_table(location, spec: EcoSpec, jobs: list[Job]) -> str:
    rows = []
    for job in jobs:
        for row in run_rows(job.run_dir, job.config, job.swept, job.sweep):
            rows.append({**row, "ecosystem": job.ecosystem["eco_id"], "eco_seed": job.ecosystem["seed"]})
    for eco in spec.runs:
        rows += ecosystem_rows(location, eco)
    frame = make_frame(rows)
    if "member" in frame.columns:
        frame = frame[["ecosystem", "member"] + [c for c in frame.columns if c not in ("ecosystem", "member")]]
    location.write_frame(TABLE, frame)
    return location.join(TABLE)
