"""The results-folder layer: every byte madlab writes or reads in a results folder goes through here.

Layout (docs/design.md)::

    DIR/run.json                       what produced the folder (spec, command, date, version)
    DIR/metrics.parquet                one row per (run, generation, metric), see madlab.store.table
    DIR/runs/<run_id>/config.json      resolved config of the run
    DIR/runs/<run_id>/gen-0001/        state.safetensors, samples.npz, grid.png, DONE
    DIR/runs/<run_id>/FAILED           error of a run that failed for a non-transient reason

``DIR`` is a local (or NFS) folder, or any URI fsspec understands (``s3://bucket/prefix``,
``gs://...``, ``file:///...``, ``memory://...`` in tests), so every node of a cluster can
read and write the same results. Both kinds go through one code path: a :class:`Location` is
an fsspec ``DirFileSystem`` rooted at ``DIR``; the only thing that differs is whether the
filesystem can rename (``Location.renames``), which decides how a write is made atomic.

This module owns:

* atomic writes (:meth:`Location.write_bytes`): a temp sibling renamed into place where the
  filesystem renames, a single PUT (atomic, and strongly consistent on S3, GCS, Azure) elsewhere;
* the DONE rule (:meth:`Location.publish`), the one rule readers rely on: *a generation exists
  iff its DONE record exists, and DONE is written after everything else of that generation*.
  Locally the generation is written into a temporary sibling folder (DONE last) and renamed
  to ``gen-XXXX`` in one ``rename``, so the folder is wholly there or not at all. Object stores
  have no folder rename: the files are uploaded straight into ``gen-XXXX/`` and DONE is PUT
  last; a writer killed half-way leaves files without DONE, which no reader trusts and the
  next attempt overwrites. Generations are deterministic, so a twin writer (a retried worker
  racing a slow original) writes the same bytes;
* the last-generation scan (:func:`last_done`): the highest ``t`` with generations ``1..t`` all
  published, for one run or every run of a folder from one listing;
* the sample codec (:func:`encode_samples` / :func:`decode_samples`): Samples <-> npz, images as
  8-bit pixels (the pixel map itself is :mod:`madlab.core.image`'s).

Why not write each of these with ``open``/``os.replace``: the same folder must work on a
laptop and on a bucket a cluster shares, and two code paths drift (they did).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from madlab.core.files import atomic_write_bytes, cache_root, json_bytes, tmp_name
from madlab.core.image import to_float, to_uint8
from madlab.core.samples import Samples
from madlab.store.checkpoint import state_bytes, state_from_bytes

# The results folder's layout (the module docstring): every name below DIR is spelled here.
#: what produced the folder (spec, command, dates, version)
RUN_INFO = "run.json"
#: the tidy table of every run's metrics (madlab.store.table)
TABLE = "metrics.parquet"
#: an effective-sample-size study's tables (madlab.engine.theory)
ESS_TABLE, ESS_CURVE = "ess.parquet", "ess_curve.parquet"
#: the folder of the runs, and of the batches of the vectorised engine (madlab.engine.batched.records)
RUNS, BATCHES = "runs", "batches"
#: a run folder's resolved config, failure marker and (text runs) tokenizer
CONFIG, FAILED, TOKENIZER = "config.json", "FAILED", "tokenizer.json"
#: a generation folder's publication record, and its samples
DONE, SAMPLES = "DONE", "samples.npz"


def run_folder(run_id: str) -> str:
    """``runs/<run_id>``: a run's folder below the results folder."""
    return f"{RUNS}/{run_id}"


def batch_folder(batch_id: str) -> str:
    """``batches/<batch_id>``: a batch's records below the results folder."""
    return f"{BATCHES}/{batch_id}"
_GENERATION = re.compile(r"gen-(\d+)")


def generation_folder(t: int) -> str:
    return f"gen-{t:04d}"


# ----------------------------------------------------------------------------- sample codec


def encode_samples(samples: Samples, pixels: bool, extra: dict[str, np.ndarray] | None = None) -> bytes:
    """npz bytes, no pickles; ``pixels``: images stored as 8-bit (they are on that grid); ``extra``
    arrays ride along (e.g. a curated generation's ``kept_index``)."""
    arrays = {"x_uint8": to_uint8(samples.x)} if pixels else {"x": samples.x}
    if samples.y is not None:
        arrays["y"] = samples.y
    arrays.update(extra or {})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_samples(data: bytes) -> Samples:
    """The inverse of :func:`encode_samples` (images back as float32 in [-1, 1])."""
    return decode_samples_and(data)[0]


def decode_samples_and(data: bytes, *extra: str) -> tuple[Samples, dict[str, np.ndarray | None]]:
    """The samples and the ``extra`` arrays named (None where absent)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        x = to_float(z["x_uint8"]) if "x_uint8" in z.files else z["x"]
        samples = Samples(x, z["y"] if "y" in z.files else None)
        return samples, {name: z[name] if name in z.files else None for name in extra}


# ----------------------------------------------------------------------------- locations


class Location:
    """A results location: a folder below which every path is a relative ``"a/b/c"`` string.

    ``where`` is a local path or any fsspec URI (``file://`` URIs are local folders). Raises
    ValueError (unknown protocol) or ImportError (its driver is not installed) as fsspec does.
    """

    def __init__(self, where, *, _base=None, _root: str | None = None):
        if _base is None:
            _base, _root = fsspec.core.url_to_fs(str(where))
            if isinstance(_base, LocalFileSystem):
                _base = LocalFileSystem(auto_mkdir=True)  # object stores have no folders to create
        self.base = _base
        self.root = _root.rstrip("/") or "/"
        self.fs = DirFileSystem(path=self.root, fs=_base)
        #: local (and NFS) folders rename atomically; object stores do not
        self.renames = isinstance(_base, LocalFileSystem)
        self.local = self.renames
        self.uri = self.root if self.local else _base.unstrip_protocol(self.root)

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def child(self, *parts: str) -> "Location":
        return Location(None, _base=self.base, _root=posixpath.join(self.root, *parts))

    @property
    def name(self) -> str:
        return posixpath.basename(self.root)

    def path(self, rel: str = "") -> str:
        """``rel`` on the underlying filesystem (a local path, or a bucket path without protocol)."""
        return posixpath.join(self.root, rel) if rel else self.root

    def join(self, rel: str = "") -> str:
        """Printable location of ``rel``: a local path, or a URI."""
        return self.path(rel) if self.local else self.base.unstrip_protocol(self.path(rel))

    # ------------------------------------------------------------------ reading
    def exists(self, rel: str) -> bool:
        """Whether the file ``rel`` exists (a folder does not count)."""
        return self.fs.isfile(rel)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(rel)

    def read_json(self, rel: str):
        return json.loads(self.read_bytes(rel))

    def read_frame(self, rel: str):
        """A parquet table as a pandas DataFrame."""
        return pd.read_parquet(io.BytesIO(self.read_bytes(rel)))

    def glob(self, pattern: str) -> list[str]:
        """Relative paths below the root matching ``pattern`` (temp files never match ``gen-*``)."""
        return sorted(self.fs.glob(pattern))

    # ------------------------------------------------------------------ writing
    def makedirs(self, rel: str = "") -> None:
        """Create a folder where folders exist (OSError if it cannot be); nothing on object stores."""
        if self.local:
            self.fs.makedirs(rel, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Atomic: a temp sibling renamed into place, or one PUT where the filesystem cannot rename."""
        if not self.renames:
            self.fs.pipe_file(rel, data)
            return
        atomic_write_bytes(self.path(rel), data)

    def write_json(self, rel: str, obj, indent: int | None = 1) -> None:
        self.write_bytes(rel, json_bytes(obj, indent))

    def write_frame(self, rel: str, frame) -> None:
        """A pandas DataFrame as a parquet table (no index), atomically."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.write_bytes(rel, buffer.getvalue())

    def write_many(self, files: dict[str, bytes]) -> None:
        """Several files, each atomically; object stores upload them concurrently where fsspec can."""
        if self.renames:
            for rel, data in files.items():
                self.write_bytes(rel, data)
        elif files:
            self.fs.pipe(files)

    def delete(self, rel: str) -> None:
        if self.fs.exists(rel):
            self.fs.rm(rel, recursive=True)

    def publish(self, folder: str, files: dict[str, bytes], done: bytes) -> bool:
        """Publish ``folder`` with ``files`` and its DONE record under the DONE rule (module docstring).

        Returns False if the folder was already published (by a twin writer): published
        generations are never rewritten.
        """
        marker = posixpath.join(folder, DONE)
        if self.exists(marker):
            return False
        if not self.renames:
            if files:
                self.fs.pipe({posixpath.join(folder, name): data for name, data in files.items()})
            self.fs.pipe_file(marker, done)
            return True
        tmp = tmp_name(folder)
        try:
            for name, data in {**files, DONE: done}.items():  # DONE last
                self.fs.pipe_file(posixpath.join(tmp, name), data)
            if self.fs.exists(folder) and not self.exists(marker):
                self.fs.rm(folder, recursive=True)  # debris without DONE: a crash or an old layout
            try:
                os.rename(self.path(tmp), self.path(folder))
            except OSError:
                if not self.exists(marker):
                    raise
                self.fs.rm(tmp, recursive=True)  # a twin writer published it first
                return False
        except BaseException:
            self.delete(tmp)
            raise
        return True


def location_of(where) -> Location:
    return where if isinstance(where, Location) else Location(where)


# ----------------------------------------------------------------------------- the last-generation scan


def _consecutive(generations: set[int]) -> int:
    t = 0
    while t + 1 in generations:
        t += 1
    return t


def last_done(location: Location, runs: str | None = None) -> int | dict[str, int]:
    """Highest t such that generations 1..t are all published.

    ``runs=None``: of the run whose folder ``location`` is. ``runs="runs"``: of every run below
    that folder, as ``{run_id: t}`` (runs with nothing published are absent).

    How it looks depends on what is cheap, not on what it trusts (a DONE record, always): a local
    folder is probed ``gen-0001/DONE``, ``gen-0002/DONE``, ... (a stat each; listing would stat
    every file of every generation), an object store is listed once (a request per probe would
    cost a round trip each).
    """
    if location.renames:
        if runs is None:
            return _probe(location)
        if not location.fs.isdir(runs):
            return {}
        names = sorted(posixpath.basename(p.rstrip("/")) for p in location.fs.ls(runs, detail=False))
        found = {name: _probe(location.child(runs, name)) for name in names}
        return {name: t for name, t in found.items() if t}
    pattern = f"gen-*/{DONE}" if runs is None else f"{runs}/*/gen-*/{DONE}"
    listed: dict[str, set[int]] = {}
    for rel in location.glob(pattern):
        parts = rel.split("/")
        match = _GENERATION.fullmatch(parts[-2])
        if match:
            listed.setdefault("" if runs is None else parts[-3], set()).add(int(match.group(1)))
    if runs is None:
        return _consecutive(listed.get("", set()))
    return {run: t for run, gens in listed.items() if (t := _consecutive(gens))}


def _probe(location: Location) -> int:
    t = 0
    while location.exists(f"{generation_folder(t + 1)}/{DONE}"):
        t += 1
    return t


# ----------------------------------------------------------------------------- one run


class RunStore:
    """The folder of one run: its published generations and its FAILED marker."""

    def __init__(self, run_dir):
        self.location = location_of(run_dir)
        #: a local path, or the URI of a folder on an object store
        self.dir = self.location.join()

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
            return self.location.path("cache")
        digest = hashlib.sha256(self.location.uri.encode()).hexdigest()[:16]
        return str(cache_root() / "runs" / f"{self.name}-{digest}")

    def gen_dir(self, t: int):
        """Generation t's folder on the underlying filesystem: a Path locally, else a bucket path."""
        path = self.location.path(generation_folder(t))
        return Path(path) if self.local else path

    def _file(self, t: int, name: str) -> str:
        return f"{generation_folder(t)}/{name}"

    def is_done(self, t: int) -> bool:
        return self.location.exists(self._file(t, DONE))

    def last_done(self) -> int:
        return last_done(self.location)

    def generations(self) -> list[int]:
        """Every published generation (DONE present), consecutive or not."""
        gens = {int(m.group(1)) for rel in self.location.glob(f"gen-*/{DONE}")
                if (m := _GENERATION.fullmatch(rel.split("/")[0]))}
        return sorted(gens)

    def record(self, t: int) -> dict:
        return self.location.read_json(self._file(t, DONE))

    def state(self, t: int) -> dict:
        return state_from_bytes(self.location.read_bytes(self._file(t, "state.safetensors")), as_numpy=True)

    def samples(self, t: int) -> Samples:
        return decode_samples(self.location.read_bytes(self._file(t, SAMPLES)))

    def publish(self, t: int, state: dict, samples: Samples, record: dict, image: bool,
                extra: dict[str, bytes] | None = None) -> bool:
        """Publish generation t (checkpoint, samples, ``extra`` files such as a grid, DONE last).

        ``image``: the samples are stored as 8-bit pixels. False if it was already published.
        """
        files = {"state.safetensors": state_bytes(state), SAMPLES: encode_samples(samples, image),
                 **(extra or {})}
        return self.location.publish(generation_folder(t), files, json_bytes(record, indent=None))

    def copy_generation(self, t: int, source: "RunStore") -> bool:
        """Publish ``source``'s generation t here byte for byte (same files, same DONE record)."""
        folder = generation_folder(t)
        names = [rel.rsplit("/", 1)[1] for rel in source.location.glob(f"{folder}/*")]
        files = {name: source.location.read_bytes(f"{folder}/{name}") for name in names if name != DONE}
        return self.location.publish(folder, files, source.location.read_bytes(f"{folder}/{DONE}"))

    # ------------------------------------------------------------------ run-level markers
    def config(self) -> dict:
        """The run's config.json record (``{"config": ..., "swept": ...}``)."""
        return self.location.read_json(CONFIG)

    def mark_failed(self, t: int, error: str) -> None:
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
        self.location.write_bytes(rel, b"")
        return True
