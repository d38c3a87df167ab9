"""Local files: madlab's cache folder and the one atomic write.

Every file madlab writes is written atomically: to a temporary sibling, then renamed into place
(``os.replace``), so a reader never sees half a file and a writer killed half-way leaves only a
temp file that the next write ignores. Results folders, which may live on an object store, go
through :class:`madlab.store.storage.Location`, whose local branch is this same write.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    """madlab's cache folder: ``$MADLAB_CACHE`` or ``~/.cache/madlab``."""
    return Path(os.environ.get("MADLAB_CACHE") or Path.home() / ".cache" / "madlab").expanduser()


def tmp_name(rel: str) -> str:
    """A hidden temporary sibling of ``rel`` (a posix path), unique to this process and call."""
    head, name = posixpath.split(rel)
    return posixpath.join(head, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def json_bytes(obj, indent: int | None = 1) -> bytes:
    """JSON with sorted keys (equal records give equal files); numpy scalars become numbers."""
    return json.dumps(obj, indent=indent, sort_keys=True, default=_json_default).encode()


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write one local file atomically: a temp sibling renamed into place (parent folders are made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_name(path.as_posix()))
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def atomic_write_table(path, frame) -> None:
    """A pandas DataFrame as a parquet table (no index), atomically."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
