"""Which runs of a sweep share a batch: a pure function of the spec, so a resumed sweep finds
the batches (and their records) it wrote before, whatever the number of workers. (The driver
imports this; it must not import torch.)"""
from __future__ import annotations

import functools
import json
import math

import numpy as np

from madlab.datasets import get_dataset_class
from madlab.metrics.registry import batched_names, metric_names
from madlab.plugins.registry import get_generator_class
from madlab.schema.config import RunConfig, eval_size
from madlab.schema.schemes import pool_size
from madlab.specs import make_components

#: the loop fields the batched engine implements; a run that sets any other (``curation``, or an
#: option added later) to a non-default value keeps the per-run loop, so nothing is batched that
#: the engine would compute wrongly
ENGINE_LOOP_FIELDS = frozenset({"scheme", "generations", "n_real", "n_synthetic", "n_initial", "bias", "warm_start",
                                "accumulate_synthetic", "memory", "train_size"})


def batch_key(config: RunConfig) -> str | None:
    """Runs with equal keys can share a batch; None for a run that cannot be batched at all
    (an expensive generator, image data, a loop option or a metric the engine does not implement)."""
    if not _batchable(json.dumps(config.dataset, sort_keys=True), json.dumps(config.generator, sort_keys=True)):
        return None
    if set(config.metrics.names or ()) & set(metric_names("vector")) - set(batched_names()):
        return None
    loop = config.loop
    if loop.accumulate_synthetic == "truncated":  # the engine pools whole sets only
        return None
    if any(getattr(loop, name) != info.default for name, info in type(loop).model_fields.items()
           if name not in ENGINE_LOOP_FIELDS):
        return None
    identity = config.identity()
    identity.pop("seed")
    identity["loop"].pop("bias")
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _batchable(dataset: str, generator: str) -> bool:
    return (get_generator_class(json.loads(generator)["name"]).cheap
            and get_dataset_class(json.loads(dataset)["name"]).kind == "vector")


#: most runs in one batch (several batches keep every worker busy)
MAX_BATCH_RUNS = 256
#: memory one batch may hold for its runs' data (history, pools, reference sets)
BATCH_BYTES = 512 * 2**20


def run_bytes(config: RunConfig, dim: int) -> int:
    """What one run of a batch keeps in memory: real and reference sets, the sample history
    (the whole pool for accumulate-subsample), fitted moments."""
    loop = config.loop
    rows = loop.first_size + 2 * eval_size(config) + max(loop.n_synthetic, eval_size(config))
    if loop.scheme == "accumulate-subsample" or (loop.scheme == "fixed-real" and loop.accumulate_synthetic):
        rows += pool_size(loop)
    else:
        rows += loop.memory * loop.n_synthetic
    return 8 * (rows * dim + 4 * dim * dim)


def assign_batches(configs: list[RunConfig], min_runs: int) -> list[tuple[str, list[int]]]:
    """(key, run indices) of every batch: runs of one batch key, at least ``min_runs`` of them,
    split evenly into batches of at most MAX_BATCH_RUNS runs and BATCH_BYTES."""
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        key = batch_key(config)
        if key is not None:
            groups.setdefault(key, []).append(i)
    out = []
    for key, indices in groups.items():
        if len(indices) < max(1, min_runs):
            continue
        dim = int(np.prod(make_components(configs[indices[0]])[0].shape))
        cap = max(1, min(MAX_BATCH_RUNS, BATCH_BYTES // run_bytes(configs[indices[0]], dim)))
        count = math.ceil(len(indices) / cap)
        for part in np.array_split(np.asarray(indices), count):
            out.append((key, [int(i) for i in part]))
    return out
