"""Results folders: atomic writes, per-generation records, the tidy table.

Layout (DESIGN.md)::

    DIR/run.json                       what produced the folder (spec, command, date, version)
    DIR/metrics.parquet                one row per (run, generation, metric)
    DIR/runs/<run_id>/config.json      resolved config of the run
    DIR/runs/<run_id>/gen-0001/        state.safetensors, samples.npz, grid.png, DONE
    DIR/runs/<run_id>/FAILED           error of a run that failed for a non-transient reason

A generation is published by renaming a completed temporary folder to ``gen-XXXX``; the DONE
record inside it is written last. A folder without DONE is never trusted, so a generation is
either wholly there or not at all, whatever kills the process.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from madlab.checkpoint import load_state, save_state
from madlab.samples import Samples

TABLE = "metrics.parquet"
BASE_COLUMNS = ["sweep", "run_id", "generator", "dataset", "scheme", "bias", "n_real", "n_synthetic",
                "n_initial", "seed", "generation", "metric", "value"]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_table(path, frame: pd.DataFrame) -> None:
    path = Path(path)
    tmp = _tmp_name(path)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def save_samples(path, samples: Samples, image: bool) -> None:
    """Image samples are stored as 8-bit pixels (they are quantised to that grid anyway)."""
    arrays = {}
    if image:
        arrays["x_uint8"] = np.round((np.clip(samples.x, -1, 1) + 1) * 127.5).astype(np.uint8)
    else:
        arrays["x"] = samples.x
    if samples.y is not None:
        arrays["y"] = samples.y
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_samples(path) -> Samples:
    with np.load(path, allow_pickle=False) as z:
        x = z["x_uint8"].astype(np.float32) / 127.5 - 1 if "x_uint8" in z.files else z["x"]
        return Samples(x, z["y"] if "y" in z.files else None)


class RunStore:
    """The folder of one run."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir)

    def gen_dir(self, t: int) -> Path:
        return self.dir / f"gen-{t:04d}"

    def is_done(self, t: int) -> bool:
        return (self.gen_dir(t) / "DONE").is_file()

    def last_done(self) -> int:
        """Highest t such that generations 1..t are all published."""
        t = 0
        while self.is_done(t + 1):
            t += 1
        return t

    def record(self, t: int) -> dict:
        return json.loads((self.gen_dir(t) / "DONE").read_text())

    def state(self, t: int) -> dict:
        return load_state(str(self.gen_dir(t) / "state.safetensors"), as_numpy=True)

    def samples(self, t: int) -> Samples:
        return load_samples(self.gen_dir(t) / "samples.npz")

    def publish(self, t: int, state: dict, samples: Samples, record: dict, image: bool) -> None:
        """Write generation t's files into a temporary folder and rename it into place."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.gen_dir(t)
        tmp = _tmp_name(final)
        tmp.mkdir()
        try:
            save_state(state, str(tmp / "state.safetensors"))
            save_samples(tmp / "samples.npz", samples, image)
            if image:
                _save_grid(samples, tmp / "grid.png")
            (tmp / "DONE").write_text(json.dumps(record, sort_keys=True, default=_json_default))
            if final.exists() and not (final / "DONE").is_file():
                shutil.rmtree(final, ignore_errors=True)  # debris from an old layout or a crash
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "DONE").is_file():
                    raise
                shutil.rmtree(tmp)  # a twin worker (e.g. a retried actor) published it first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def mark_failed(self, t: int, error: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dir / "FAILED", {"generation": t, "error": error})

    def failure(self) -> dict | None:
        path = self.dir / "FAILED"
        return json.loads(path.read_text()) if path.is_file() else None

    def clear_failure(self) -> None:
        (self.dir / "FAILED").unlink(missing_ok=True)


def _save_grid(samples: Samples, path: Path, n: int = 64) -> None:
    import torch
    from torchvision.utils import save_image

    x = torch.from_numpy(np.asarray(samples.x[:n], dtype=np.float32))
    save_image((x + 1) / 2, str(path), nrow=8)
