"""Weights & Biases: offline by default (nothing is sent; ``wandb sync DIR/wandb/offline-run-*``
uploads later), one W&B run per madlab run, grouped by sweep, the resolved config as its config.

A W&B run id is derived from the results folder and madlab's run id, so a resumed sweep writes
to the same W&B run (offline, each session is a new ``offline-run-*-<id>`` folder of that id,
which ``wandb sync`` uploads into the one run). Each generation is one ``log(..., step=t)``, i.e.
one history record of the run's transaction log; on resume the steps already in the log files
of that id are read back (:func:`read_run_files`) and not logged again.

wandb no longer ships a reader of its ``.wandb`` transaction log (its sync moved into its Go
core), so :func:`read_run_files` reads the format (LevelDB's log format: 32 KiB blocks of
checksummed chunks, each record a ``wandb_internal_pb2.Record`` protobuf) with wandb's own
protobuf classes.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import struct
import zlib

from madlab.tracking.base import Points, RunInfo, SweepInfo
from madlab.tracking.targets import Target

ERROR_KEY = "madlab/error"
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_id(sweep: SweepInfo, run_id: str) -> str:
    """The W&B run id of a madlab run (W&B ids allow letters, digits and hyphens)."""
    return f"madlab-{sweep.key}-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


class WandbSink:
    def __init__(self, target: Target, sweep: SweepInfo):
        self.root, self.sweep = target.uri, sweep
        self.mode = target.options.get("mode", "offline")
        self.project = target.options.get("project", "madlab")
        self.entity = target.options.get("entity")
        self.runs: dict = {}

    def start(self) -> dict[str, tuple[int, str | None]]:
        held = {}
        for run in self.sweep.runs:
            sessions = [read_run_files(f) for f in run_folders(self.root, wandb_id(self.sweep, run.run_id))]
            if sessions:
                steps = [row["_step"] for session in sessions for row in session["history"]]
                exit_code = sessions[-1]["exit_code"]
                held[run.run_id] = (max(steps, default=0), {0: "ok", 1: "failed"}.get(exit_code))
        return held

    def _run(self, run: RunInfo):
        if run.run_id not in self.runs:
            # optional dependency (extra `wandb`): imported only when a sweep tracks to W&B
            import wandb

            settings = wandb.Settings(mode=self.mode, silent=True, console="off", save_code=False,
                                      x_disable_stats=True, x_disable_machine_info=True)
            config = {**run.config, "madlab": {"run_id": run.run_id, "results": self.sweep.results,
                                               "swept": run.swept}}
            self.runs[run.run_id] = wandb.init(
                project=self.project, entity=self.entity, group=f"{self.sweep.name}-{self.sweep.key[:6]}",
                name=run.run_id, id=wandb_id(self.sweep, run.run_id), dir=self.root, config=config,
                tags=[f"{k}={v}"[:64] for k, v in run.tags().items()], resume="allow", reinit="create_new",
                settings=settings)
        return self.runs[run.run_id]

    def log(self, run: RunInfo, points: Points) -> None:
        handle = self._run(run)
        for t, metrics in points.items():
            handle.log(dict(metrics), step=t)

    def end(self, run: RunInfo, status: str, error: str | None) -> None:
        handle = self._run(run)
        if status == "failed":
            handle.summary[ERROR_KEY] = error or "failed"
        handle.finish(exit_code=1 if status == "failed" else 0)
        del self.runs[run.run_id]

    def close(self) -> None:
        import wandb  # optional dependency, see _run

        for handle in self.runs.values():
            handle.finish()
        self.runs.clear()
        # W&B's service process writes the run files; finish() can return before the last records are
        # on disk, teardown waits for them (a back-fill, a resume or `wandb sync` then reads whole files)
        wandb.teardown()


def run_folders(root: str, run_id: str) -> list[str]:
    """The local folders of one W&B run id under ``root`` (``root/wandb/offline-run-*-<id>``, oldest first)."""
    return sorted(glob.glob(os.path.join(root, "wandb", f"*run-*-{glob.escape(run_id)}")))


def read_run_files(folder: str) -> dict:
    """What a W&B run folder's transaction log holds: ``{"run": {id, name, group, config},
    "history": [{"_step": t, metric: value, ...}], "summary": {...}, "exit_code": int | None}``."""
    # optional dependency (extra `wandb`): its protobuf classes parse the records
    from wandb.proto import wandb_internal_pb2

    found = {"run": {}, "history": [], "summary": {}, "exit_code": None}
    for path in glob.glob(os.path.join(folder, "run-*.wandb")):
        for data in _log_records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            _take(found, record)
    return found


def _take(found: dict, record) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "history":
        row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
        row["_step"] = record.history.step.num if record.history.HasField("step") else row.get("_step")
        found["history"].append(row)
    elif kind == "summary":
        found["summary"].update({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                 for i in record.summary.update})
    elif kind == "run":
        run = record.run
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        found["run"] = {"id": run.run_id, "name": run.display_name, "group": run.run_group, "config": config}
    elif kind == "exit":
        found["exit_code"] = record.exit.exit_code


def _log_records(path: str):
    """The records of a LevelDB-log-format file; a truncated or corrupt tail (a killed writer) ends it."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        space = _BLOCK - pos % _BLOCK
        if space < _HEADER:  # a block's trailer
            pos += space
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        if kind == 0 or len(chunk) < length or checksum != zlib.crc32(chunk, zlib.crc32(bytes([kind]))):
            return
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
