"""Generation 1 computed once for all the runs of a results folder that would compute it identically.

Generation 1 trains on real data only, so runs that differ only in what happens later (the
scheme, the number of generations, memory, warm start, ...) train the same generation-1 model
from the same rows with the same seeds: a sweep over the three MAD loops would train each neural
generation-1 model three times and get bit-identical results. Here the first run to need it
computes it (under a cross-process file lock, so concurrent Ray workers wait instead of computing
it too), publishes it into its own folder as usual and copies it to ``DIR/shared/gen1-<key>/``;
the others copy it from there into their own ``gen-0001/`` (same files, same DONE record), so every
run folder still holds its whole history and resume and fault handling are unchanged.

``key`` hashes everything that determines generation 1 (:func:`first_generation_key`): the seed,
dataset, generator and its resolved parameters, metrics, the generation-1 training-set size, the
number of samples drawn and their bias, and any loop setting not known to be irrelevant (so a
future loop option is shared only once it is declared irrelevant here). Only non-cheap generators
on local results folders share: a cheap generator recomputes faster than it could copy, and object
stores have no lock.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from filelock import FileLock

from madlab.schema.config import RunConfig, eval_size
from madlab.store.storage import RUNS, RunStore

#: loop fields that cannot change generation 1 (it trains on the first ``first_size`` real rows only)
_LATER_ONLY = ("scheme", "generations", "n_real", "n_initial", "memory", "accumulate_synthetic", "train_size",
               "warm_start")
SHARED = "shared"


def first_generation_key(config: RunConfig) -> str:
    identity = config.identity()
    loop = {k: v for k, v in identity.pop("loop").items() if k not in _LATER_ONLY}
    loop["first_size"] = config.loop.first_size
    loop["n_eval"] = eval_size(config)
    identity.pop("name", None)
    blob = json.dumps({**identity, "loop": loop}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class SharedFirstGeneration:
    """The shared generation 1 of one run: ``run(compute)`` returns the run's generation-1 record."""

    def __init__(self, store: RunStore, key: str):
        self.store = store
        self.key = key
        root = Path(store.dir).parent.parent / SHARED
        self.shared = RunStore(root / f"gen1-{key}")
        self.lock_path = root / f"gen1-{key}.lock"

    @classmethod
    def for_run(cls, config: RunConfig, store: RunStore, generator_cls) -> "SharedFirstGeneration | None":
        """Sharing for this run, or None where it does not apply (cheap generator, object store,
        a run folder outside a results folder's ``runs/``)."""
        if generator_cls.cheap or not store.local or Path(store.dir).parent.name != RUNS:
            return None
        return cls(store, first_generation_key(config))

    def run(self, compute) -> dict:

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_path)):
            if self.shared.is_done(1):
                self.store.copy_generation(1, self.shared)  # every file, the sample grid included
                return {**self.shared.record(1), "adopted": True}  # computed by another run: no compute here
            record = compute()
            self.shared.copy_generation(1, self.store)
            return record
