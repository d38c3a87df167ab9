"""The pinned environment: how madlab makes trained reference networks the same bytes everywhere.

The LeNet extractor and the ``text-lm`` encoder are trained by madlab itself, once per cache, in a
child process started with :data:`PINNED_ENV` (one thread, ATen's AVX2 kernels, MKL's fixed
``AVX2`` branch, no GPU), under a cross-process lock that waits at most :data:`LOCK_TIMEOUT_S`.
Their weights are identified by :func:`file_sha256`, which goes into every results table.
"""
from __future__ import annotations

import hashlib
import os

#: The environment the training child process starts with (read by torch, MKL and OpenMP at start-up,
#: so it cannot be set from inside an already running process).
PINNED_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2",
              "MKL_CBWR": "AVX2", "CUDA_VISIBLE_DEVICES": ""}
#: How long a worker waits for another process that is training a reference network.
LOCK_TIMEOUT_S = 1800


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
