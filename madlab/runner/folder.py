"""Preparing a results folder for a sweep: its jobs, run.json, the spec copy, each run's config.json.

Nothing here computes; :func:`plan_jobs` writes nothing, so a sweep can be checked (e.g. its
resources against the cluster) before the folder is created.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from madlab import __version__
from madlab.config import Spec
from madlab.errors import MadlabError
from madlab.provenance import check_resume, config_record
from madlab.runner.jobs import Job
from madlab.storage import CONFIG, Location, last_done


def results_location(out_dir) -> Location:
    """The results location, or a MadlabError naming ``--out`` (unknown scheme, missing driver)."""
    if isinstance(out_dir, Location):
        return out_dir
    try:
        return Location(out_dir)
    except (ValueError, ImportError) as exc:
        raise MadlabError(f"--out {out_dir}: {exc}") from None


def plan_jobs(spec: Spec, out_dir) -> list[Job]:
    """The jobs of a spec (writes nothing)."""
    location = results_location(out_dir)
    name = spec.runs[0].config.name
    return [Job(run.run_id, run.config.model_dump(mode="json"), run.swept,
                location.join(f"runs/{run.run_id}"), name) for run in spec.runs]


def scan_done(location: Location, jobs: list[Job]) -> dict[str, int]:
    """Last published generation of every job (one listing of the folder)."""
    done = last_done(location, runs="runs")
    return {job.run_id: done.get(job.run_id, 0) for job in jobs}


def prepare(spec: Spec, out_dir, command: str, jobs: list[Job] | None = None) -> list[Job]:
    """Create the results folder and each run's resolved config (idempotent)."""
    location = results_location(out_dir)
    jobs = jobs if jobs is not None else plan_jobs(spec, location)
    records = {job.run_id: config_record(job.config, job.swept) for job in jobs}
    for job in jobs:  # a resume over a different resolved config is refused before anything is written
        if location.exists(f"runs/{job.run_id}/{CONFIG}"):
            check_resume(job.run_id, location.read_json(f"runs/{job.run_id}/{CONFIG}"), records[job.run_id])
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
        files[f"runs/{job.run_id}/{CONFIG}"] = json.dumps(records[job.run_id], indent=1, sort_keys=True).encode()
    location.write_many(files)
    return jobs
