"""Results folders on a local/NFS path or an object store: atomic publishing, records, markers.

Layout (docs/design.md)::

    DIR/run.json                       what produced the folder (spec, command, date, version)
    DIR/metrics.parquet                one row per (run, generation, metric)
    DIR/runs/<run_id>/config.json      resolved config of the run
    DIR/runs/<run_id>/gen-0001/        state.safetensors, samples.npz, grid.png, DONE
    DIR/runs/<run_id>/FAILED           error of a run that failed for a non-transient reason

``DIR`` is a local (or NFS) folder, or any URI fsspec understands (``s3://bucket/prefix``,
``gs://...``, ``file:///...``, ``memory://...`` in tests), so every node of a cluster can
read and write the same results.

Publishing a generation, the one rule readers rely on: *a generation exists iff its DONE
record exists, and DONE is written after everything else of that generation*.

* On a local filesystem the generation is written into a temporary sibling folder (DONE last)
  and renamed to ``gen-XXXX`` in one ``rename``, so the folder is wholly there or not at all.
* Object stores have no rename of folders, but a single object PUT is atomic and (S3 since
  2020, GCS, Azure) strongly consistent. The files are uploaded straight into ``gen-XXXX/``
  and the DONE object is PUT last. A writer killed half-way leaves files without DONE, which
  no reader trusts and the next attempt overwrites. Generations are deterministic, so a twin
  writer (a retried actor racing a slow original) uploads the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from madlab.checkpoint import load_state, save_state
from madlab.samples import Samples

TABLE = "metrics.parquet"
BASE_COLUMNS = ["sweep", "run_id", "generator", "dataset", "scheme", "bias", "n_real", "n_synthetic",
                "n_initial", "seed", "generation", "metric", "value"]
DONE = "DONE"
FAILED = "FAILED"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _json_bytes(obj, indent: int | None = 1) -> bytes:
    return json.dumps(obj, indent=indent, sort_keys=True, default=_json_default).encode()


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, _json_bytes(obj))


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


def load_samples(path_or_file) -> Samples:
    with np.load(path_or_file, allow_pickle=False) as z:
        x = z["x_uint8"].astype(np.float32) / 127.5 - 1 if "x_uint8" in z.files else z["x"]
        return Samples(x, z["y"] if "y" in z.files else None)


# ----------------------------------------------------------------------------- locations


class Location:
    """A results location: a local folder (atomic renames) or an fsspec URI (object semantics).

    Paths below the root are given as ``"runs/<id>/gen-0001/DONE"``-style relative strings.
    ``file://`` URIs are local folders.
    """

    def __init__(self, where):
        text = str(where)
        fs, path = fsspec.core.url_to_fs(text)
        self.local = isinstance(fs, LocalFileSystem)
        self.fs = fs
        if self.local:
            self.root = Path(path)
            self.uri = str(self.root)
        else:
            self.root = path.rstrip("/")
            self.uri = fs.unstrip_protocol(self.root)

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def child(self, *parts: str) -> "Location":
        loc = object.__new__(Location)
        loc.local, loc.fs = self.local, self.fs
        if self.local:
            loc.root = self.root.joinpath(*parts)
            loc.uri = str(loc.root)
        else:
            loc.root = "/".join([self.root, *parts])
            loc.uri = self.fs.unstrip_protocol(loc.root)
        return loc

    def path(self, rel: str = ""):
        """Local: a Path; object store: the filesystem path (no protocol)."""
        if self.local:
            return self.root / rel if rel else self.root
        return f"{self.root}/{rel}" if rel else self.root

    @property
    def name(self) -> str:
        return self.root.name if self.local else self.root.rsplit("/", 1)[-1]

    # ------------------------------------------------------------------ primitives
    def makedirs(self, rel: str = "") -> None:
        if self.local:
            self.path(rel).mkdir(parents=True, exist_ok=True)
        # object stores have no folders

    def exists(self, rel: str) -> bool:
        if self.local:
            return self.path(rel).is_file()
        return self.fs.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        if self.local:
            return self.path(rel).read_bytes()
        return self.fs.cat_file(self.path(rel))

    def read_json(self, rel: str):
        return json.loads(self.read_bytes(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Atomic: a temp file renamed into place locally, one PUT on an object store."""
        if self.local:
            atomic_write_bytes(self.path(rel), data)
        else:
            self.fs.pipe_file(self.path(rel), data)

    def write_json(self, rel: str, obj) -> None:
        self.write_bytes(rel, _json_bytes(obj))

    def write_many(self, files: dict[str, bytes]) -> None:
        """Several small files; object stores upload them concurrently where fsspec can."""
        if self.local:
            for rel, data in files.items():
                self.write_bytes(rel, data)
        elif files:
            self.fs.pipe({self.path(rel): data for rel, data in files.items()})

    def delete(self, rel: str) -> None:
        if self.local:
            self.path(rel).unlink(missing_ok=True)
        elif self.fs.exists(self.path(rel)):
            self.fs.rm_file(self.path(rel))

    def glob(self, pattern: str) -> list[str]:
        """Relative paths below the root matching ``pattern``."""
        if self.local:
            return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern))
        prefix = self.root + "/"
        return sorted(p[len(prefix):] for p in self.fs.glob(prefix + pattern) if p.startswith(prefix))

    def join(self, rel: str) -> str:
        """Printable location of ``rel`` (a local path or a URI)."""
        return str(self.path(rel)) if self.local else self.fs.unstrip_protocol(self.path(rel))


# ----------------------------------------------------------------------------- one run


class RunStore:
    """The folder of one run, local or on an object store (see the module docstring)."""

    def __init__(self, run_dir):
        self.location = run_dir if isinstance(run_dir, Location) else Location(run_dir)
        #: a Path for a local folder, the URI string for an object store
        self.dir = self.location.root if self.location.local else self.location.uri

    @property
    def local(self) -> bool:
        return self.location.local

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def cache_dir(self) -> str:
        """A node-local folder for caches (real-set feature statistics): the run folder when it is
        local, else a per-run folder under ``~/.cache/madlab`` (caches are never shared state)."""
        if self.local:
            return str(self.location.root / "cache")
        digest = hashlib.sha256(self.location.uri.encode()).hexdigest()[:16]
        base = Path(os.environ.get("MADLAB_CACHE", Path.home() / ".cache" / "madlab"))
        return str(base / "runs" / f"{self.name}-{digest}")

    @staticmethod
    def _gen(t: int) -> str:
        return f"gen-{t:04d}"

    def gen_dir(self, t: int):
        return self.location.path(self._gen(t))

    def is_done(self, t: int) -> bool:
        return self.location.exists(f"{self._gen(t)}/{DONE}")

    def last_done(self) -> int:
        """Highest t such that generations 1..t are all published."""
        if self.local:
            t = 0
            while self.is_done(t + 1):
                t += 1
            return t
        done = set()
        for rel in self.location.glob(f"gen-*/{DONE}"):
            try:
                done.add(int(rel.split("/")[0][4:]))
            except ValueError:
                continue
        t = 0
        while t + 1 in done:
            t += 1
        return t

    def record(self, t: int) -> dict:
        return self.location.read_json(f"{self._gen(t)}/{DONE}")

    def state(self, t: int) -> dict:
        rel = f"{self._gen(t)}/state.safetensors"
        if self.local:
            return load_state(str(self.location.path(rel)), as_numpy=True)
        from safetensors.torch import load

        return {k: v.numpy() for k, v in load(self.location.read_bytes(rel)).items()}

    def samples(self, t: int) -> Samples:
        rel = f"{self._gen(t)}/samples.npz"
        if self.local:
            return load_samples(self.location.path(rel))
        return load_samples(io.BytesIO(self.location.read_bytes(rel)))

    def publish(self, t: int, state: dict, samples: Samples, record: dict, image: bool,
                extra: dict[str, bytes] | None = None) -> None:
        """Write generation t's files (and ``extra`` ones: name -> bytes), DONE last; see the module
        docstring for the guarantees."""
        if self.local:
            self._publish_local(t, state, samples, record, image, extra)
        else:
            self._publish_object_store(t, state, samples, record, image, extra)

    @staticmethod
    def _write_files(folder: Path, state: dict, samples: Samples, image: bool, extra=None) -> None:
        save_state(state, str(folder / "state.safetensors"))
        save_samples(folder / "samples.npz", samples, image)
        if image:
            _save_grid(samples, folder / "grid.png")
        for name, data in (extra or {}).items():
            (folder / name).write_bytes(data)

    def _publish_local(self, t, state, samples, record, image, extra=None) -> None:
        root = self.location.root
        root.mkdir(parents=True, exist_ok=True)
        final = root / self._gen(t)
        tmp = _tmp_name(final)
        tmp.mkdir()
        try:
            self._write_files(tmp, state, samples, image, extra)
            (tmp / DONE).write_bytes(_json_bytes(record, indent=None))
            if final.exists() and not (final / DONE).is_file():
                shutil.rmtree(final, ignore_errors=True)  # debris from an old layout or a crash
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / DONE).is_file():
                    raise
                shutil.rmtree(tmp)  # a twin worker (e.g. a retried actor) published it first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _publish_object_store(self, t, state, samples, record, image, extra=None) -> None:
        if self.is_done(t):
            return  # a twin worker published it first
        fs, gen = self.location.fs, self.location.path(self._gen(t))
        with tempfile.TemporaryDirectory(prefix="madlab-publish-") as tmp:
            folder = Path(tmp)
            self._write_files(folder, state, samples, image, extra)
            for file in sorted(folder.iterdir()):
                fs.put_file(str(file), f"{gen}/{file.name}")
        fs.pipe_file(f"{gen}/{DONE}", _json_bytes(record, indent=None))

    # ------------------------------------------------------------------ run-level markers
    def mark_failed(self, t: int, error: str) -> None:
        self.location.makedirs()
        self.location.write_json(FAILED, {"generation": t, "error": error})

    def failure(self) -> dict | None:
        return self.location.read_json(FAILED) if self.location.exists(FAILED) else None

    def clear_failure(self) -> None:
        self.location.delete(FAILED)

    def touch_marker(self, name: str) -> bool:
        """Create ``.<name>`` once; True if this call created it (used by fault injection)."""
        rel = f".{name}"
        if self.location.exists(rel):
            return False
        self.location.makedirs()
        self.location.write_bytes(rel, b"")
        return True


def _save_grid(samples: Samples, path: Path, n: int = 64) -> None:
    import torch
    from torchvision.utils import save_image

    x = torch.from_numpy(np.asarray(samples.x[:n], dtype=np.float32))
    save_image((x + 1) / 2, str(path), nrow=8)
