"""Preparing a results folder for a sweep: its jobs, run.json, the spec copy, each run's config.json.

Nothing here computes; :func:`plan_jobs` writes nothing, so a sweep can be checked (e.g. its
resources against the cluster) before the folder is created.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from madlab import __version__
from madlab.core.errors import MadlabError
from madlab.engine.batched.plan import assign_batches
from madlab.runner.jobs import Job, batched_done
from madlab.schema.config import Spec
from madlab.store.provenance import check_resume, config_record
from madlab.store.storage import CONFIG, RUN_INFO, RUNS, Location, last_done, run_folder
from madlab.store.tokenizer_file import check_resumed_tokenizers


def results_location(out_dir) -> Location:
    """The results location, or a MadlabError naming ``--out`` (unknown scheme, missing driver)."""
    if isinstance(out_dir, Location):
        return out_dir
    try:
        return Location(out_dir)
    except (ValueError, ImportError) as exc:
        raise MadlabError(f"--out {out_dir}: {exc}") from None


#: cheap runs that differ only in seed and bias are vectorised (madlab.engine.batched) when at least this
#: many share a shape; smaller groups keep a folder per run and generation
BATCH_MIN_RUNS = 16


def plan_jobs(spec: Spec, out_dir, batch_min_runs: int = BATCH_MIN_RUNS) -> list[Job]:
    """The jobs of a spec (writes nothing); cheap runs of one shape are grouped into batches."""
    location = results_location(out_dir)
    name = spec.runs[0].config.name
    jobs = [Job(run.run_id, run.config.model_dump(mode="json"), run.swept,
                location.join(run_folder(run.run_id)), name) for run in spec.runs]
    for _, indices in assign_batches([run.config for run in spec.runs], batch_min_runs):
        members = tuple(jobs[j].run_id for j in indices)
        for i in indices:
            jobs[i].batch, jobs[i].root = members, location.uri
    return jobs


def scan_done(location: Location, jobs: list[Job]) -> dict[str, int]:
    """Last published generation of every job (one listing of the folder; batch records for
    batched runs)."""
    done = last_done(location, runs=RUNS)
    batched = batched_done([j for j in jobs if j.batch is not None])
    return {job.run_id: batched[job.run_id] if job.batch is not None else done.get(job.run_id, 0) for job in jobs}


def check_resumable(jobs: list[Job], location: Location) -> dict[str, dict]:
    """Refuse (ConfigError, one line) a resume into ``location`` over a different resolved config or
    library version (``check_resume``) or, for text runs, another tokenizer than the stored
    ``tokenizer.json``; writes nothing. Returns each job's config record."""
    records = {job.run_id: config_record(job.config, job.swept) for job in jobs}
    for job in jobs:
        if location.exists(f"{run_folder(job.run_id)}/{CONFIG}"):
            check_resume(job.run_id, location.read_json(f"{run_folder(job.run_id)}/{CONFIG}"), records[job.run_id])
    check_resumed_tokenizers(jobs, location)
    return records


def prepare(spec: Spec, out_dir, command: str, jobs: list[Job] | None = None) -> list[Job]:
    """Create the results folder and each run's resolved config (idempotent)."""
    location = results_location(out_dir)
    jobs = jobs if jobs is not None else plan_jobs(spec, location)
    records = check_resumable(jobs, location)
    try:
        location.makedirs(RUNS)
    except OSError as exc:
        raise MadlabError(f"--out {out_dir}: cannot create results folder ({exc.strerror})") from None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    created = location.read_json(RUN_INFO).get("created", now) if location.exists(RUN_INFO) else now
    files = {RUN_INFO: json.dumps({
        "name": spec.runs[0].config.name, "spec": spec.path, "command": command, "created": created,
        "updated": now, "madlab_version": __version__, "runs": [r.run_id for r in spec.runs],
    }, indent=1, sort_keys=True).encode()}
    if spec.path and Path(spec.path).is_file():
        files["spec.yaml"] = Path(spec.path).read_bytes()
    for job in jobs:
        files[f"{run_folder(job.run_id)}/{CONFIG}"] = json.dumps(records[job.run_id], indent=1, sort_keys=True).encode()
    location.write_many(files)
    return jobs
