"""Compact per-batch records: a batch of cheap runs writes a few files per generation, not B folders.

Layout below the results folder (every other file of the folder is unchanged)::

    batches/<batch_id>/members.json                 the batch's run ids, in slot order
    batches/<batch_id>/gen-0007-00000-00250.npz     generation 7 of slots 0..249: metrics,
                                                    provenance, ok flags (+ samples, see below)
    batches/<batch_id>/state.npz                    what the next generation needs: per-slot done
                                                    generation, the sample history window, the
                                                    accumulate schemes' pooled statistics
    runs/<run_id>/config.json, runs/<run_id>/FAILED as for every run

Publishing rule (what readers rely on): a generation record is written atomically (temp file +
rename, one PUT on an object store) and never changes, since generations are deterministic: a
redo after a crash writes the same bytes. A slot's generation t is published iff a record of t
holds the slot with ``ok``. ``state.npz`` is rewritten atomically *after* the records it
covers, so a worker killed between the two redoes at most that one generation on resume.

Samples are kept in the records where they are small (``KEEP_SAMPLES`` floats per run per
generation: 2-D panels of `madlab report`, inspection) and always for accumulate-subsample,
whose later generations draw from every earlier sample set (resume rebuilds the pool from them).
Large theory runs keep only their metrics: that is the point of this layout.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from madlab.core.samples import Samples
from madlab.engine.batched.loop import BatchLoop, GenerationResult
from madlab.store.storage import BATCHES, batch_folder
from madlab.store.table import common_columns

#: samples of a run's generation are stored when n_synthetic x dim is at most this
KEEP_SAMPLES = 4096
_RECORD = re.compile(r"gen-(\d{4,})-(\d{5,})-(\d{5,})\.npz")


def batch_id(run_ids: list[str]) -> str:
    """A stable name for a batch: the hash of its members, in order."""
    return "batch-" + hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:12]


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _load(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class BatchStore:
    """The records of one batch in a results location (a :class:`madlab.store.storage.Location`)."""

    def __init__(self, location, run_ids: list[str]):
        self.location = location
        self.run_ids = list(run_ids)
        self.id = batch_id(self.run_ids)
        self.dir = batch_folder(self.id)

    # ------------------------------------------------------------------ writing
    def write_members(self) -> None:
        rel = f"{self.dir}/members.json"
        if not self.location.exists(rel):
            self.location.makedirs(self.dir)
            self.location.write_json(rel, {"runs": self.run_ids})

    def write_generation(self, result: GenerationResult, metadata: dict, keep_samples: bool) -> None:
        slots = result.slots
        ok = np.ones(len(slots), dtype=bool)
        ok[[j for j, s in enumerate(slots) if int(s) in result.failures]] = False
        names = sorted(result.metrics)
        arrays = {
            "slots": slots.astype(np.int64),
            "ok": ok,
            "metric_names": np.array(names, dtype=np.str_),
            "metrics": (np.stack([result.metrics[k] for k in names], 1) if names
                        else np.zeros((len(slots), 0))),
            "n_train_real": np.array([p["n_train_real"] for p in result.provenance], dtype=np.int64),
            "n_train_synthetic": np.array([p["n_train_synthetic"] for p in result.provenance], dtype=np.int64),
            "synthetic_from": np.array([p["synthetic_from"] for p in result.provenance], dtype=np.str_),
            "metadata": np.array(json.dumps(metadata, sort_keys=True), dtype=np.str_),
        }
        if result.real_vs_real is not None:  # generation 1: the report's real-vs-real reference row
            rvr = sorted(result.real_vs_real)
            arrays["real_vs_real_names"] = np.array(rvr, dtype=np.str_)
            arrays["real_vs_real"] = (np.stack([result.real_vs_real[k] for k in rvr], 1) if rvr
                                      else np.zeros((len(slots), 0)))
        if keep_samples:
            arrays["samples"] = result.samples
        name = f"gen-{result.generation:04d}-{int(slots[0]):05d}-{len(slots):05d}.npz"
        self.location.write_bytes(f"{self.dir}/{name}", _npz(arrays))

    def write_state(self, batch: BatchLoop) -> None:
        arrays = {"done": batch.done, "failed": batch.failed}
        for g, rows in batch.history.items():
            arrays[f"history/{g}"] = rows
        if batch.pool is not None:
            arrays.update({f"pool/{k}": v for k, v in batch.pool.arrays().items()})
        for slot, state in enumerate(batch.states):
            for key, value in (state or {}).items():
                arrays[f"warm/{slot}/{key}"] = np.asarray(value)
        self.location.write_bytes(f"{self.dir}/state.npz", _npz(arrays))

    # ------------------------------------------------------------------ reading
    def records(self) -> list[dict[str, np.ndarray]]:
        """Every generation record of the batch (each with its ``generation``), oldest first."""
        out = []
        for rel in self.location.glob(f"{self.dir}/gen-*.npz"):
            match = _RECORD.fullmatch(rel.rsplit("/", 1)[-1])
            if match:
                record = _load(self.location.read_bytes(rel))
                record["generation"] = int(match.group(1))
                out.append(record)
        return sorted(out, key=lambda r: (r["generation"], int(r["slots"][0])))

    def published(self, records=None) -> np.ndarray:
        """Per slot, the highest t with generations 1..t all published."""
        records = self.records() if records is None else records
        done = np.zeros(len(self.run_ids), dtype=np.int64)
        for record in records:  # oldest first, so each slot's chain extends in order
            t = record["generation"]
            slots = record["slots"][record["ok"]]
            extend = slots[done[slots] == t - 1]
            done[extend] = t
        return done

    def restore(self, batch: BatchLoop) -> None:
        """Bring ``batch`` to the published state (a fresh batch when nothing is published)."""
        if not self.location.exists(f"{self.dir}/state.npz"):
            return
        state = _load(self.location.read_bytes(f"{self.dir}/state.npz"))
        batch.done[:] = np.minimum(state["done"], self.published())
        batch.failed[:] = state["failed"]
        batch.history = {int(k.split("/")[1]): v for k, v in state.items() if k.startswith("history/")}
        if batch.pool is not None:
            for name, value in state.items():
                if name.startswith("pool/"):
                    getattr(batch.pool, name[5:])[:] = value
        warm: dict[int, dict] = {}
        for name, value in state.items():
            if name.startswith("warm/"):
                _, slot, key = name.split("/", 2)
                warm.setdefault(int(slot), {})[key] = value
        for slot, values in warm.items():
            batch.states[slot] = values
        if batch.pool_rows is not None:
            self._restore_pool_rows(batch)

    def _restore_pool_rows(self, batch: BatchLoop) -> None:
        loop = batch.loop
        done = batch.done
        slots = np.flatnonzero(done > 0)
        if len(slots):
            batch.pool_rows[slots, :loop.n_real] = batch.real(0, loop.n_real)[slots]
        for record in self.records():
            t = record["generation"]
            if t >= loop.generations or "samples" not in record:
                continue
            keep = record["ok"] & (done[record["slots"]] >= t)
            start = loop.n_real + (t - 1) * loop.n_synthetic
            batch.pool_rows[record["slots"][keep], start:start + loop.n_synthetic] = record["samples"][keep]


def keep_samples(batch: BatchLoop) -> bool:
    """Whether the records of this batch hold its samples (see the module docstring)."""
    size = batch.loop.n_synthetic * int(np.prod(batch.dataset.shape))
    return batch.loop.scheme == "accumulate-subsample" or size <= KEEP_SAMPLES


@dataclass
class RowBlock:
    """One run's table rows in columns: what :func:`madlab.store.table.run_rows` returns as dicts, without
    building 10^5 dicts for a large sweep. ``common`` holds the per-run columns, ``columns`` the
    per-row ones, both in the order run_rows puts them in a row."""

    common: dict
    columns: dict

    def __len__(self) -> int:
        return len(self.columns["value"])

    def dicts(self) -> list[dict]:
        keys = list(self.columns)
        return [{**self.common, **dict(zip(keys, values))} for values in zip(*self.columns.values())]


_PER_ROW = ("n_train_real", "n_train_synthetic", "synthetic_from", "generation", "extractor", "extractor_hash",
            "metric", "value")


def batch_rows(store: BatchStore, jobs, failures: dict[str, dict | None]) -> dict[str, RowBlock]:
    """Table rows of every member run, the rows :func:`madlab.store.table.run_rows` builds from a run
    folder: its published generations, plus one ``failed`` row if it failed."""
    records = store.records()
    done = store.published(records)
    index = {run_id: slot for slot, run_id in enumerate(store.run_ids)}
    per_slot: dict[int, dict[int, tuple]] = {}
    for record in records:
        names = np.asarray([str(n) for n in record["metric_names"]], dtype=object)
        metadata = json.loads(str(record["metadata"]))
        t = record["generation"]
        for j, slot in enumerate(record["slots"].tolist()):
            if record["ok"][j] and t <= done[slot]:
                per_slot.setdefault(slot, {})[t] = (record, j, names, metadata)
    out = {}
    for job in jobs:
        failure = failures.get(job.run_id)
        columns: dict[str, list] = {name: [] for name in _PER_ROW}
        for t, (record, j, names, metadata) in sorted(per_slot.get(index[job.run_id], {}).items()):
            m = len(names)
            columns["n_train_real"] += [int(record["n_train_real"][j])] * m
            columns["n_train_synthetic"] += [int(record["n_train_synthetic"][j])] * m
            columns["synthetic_from"] += [str(record["synthetic_from"][j])] * m
            columns["generation"] += [t] * m
            columns["extractor"] += [metadata.get("extractor")] * m
            columns["extractor_hash"] += [metadata.get("extractor_hash")] * m
            columns["metric"] += list(names)
            columns["value"] += record["metrics"][j].tolist()
        if failure:
            for name, value in zip(_PER_ROW, (None, None, None, failure["generation"], None, None, "failed",
                                               float("nan"))):
                columns[name].append(value)
        out[job.run_id] = RowBlock(common_columns(job.run_id, job.config, job.swept, job.sweep, failure), columns)
    return out


class BatchedSamples:
    """Read side for `madlab report`: the samples a batched run's records kept (see KEEP_SAMPLES),
    found by run id in a local results folder."""

    def __init__(self, results_dir):

        self.dir = Path(results_dir)
        self._slots: dict[str, tuple] = {}
        for members in sorted(self.dir.glob(f"{BATCHES}/*/members.json")):
            try:
                runs = json.loads(members.read_text())["runs"]
            except (OSError, ValueError, KeyError):
                continue
            for slot, run_id in enumerate(runs):
                self._slots[run_id] = (members.parent, slot)

    def _records(self, run_id: str, field: str = "samples", generation: int | None = None):
        if run_id not in self._slots:
            return
        folder, slot = self._slots[run_id]
        for path in sorted(folder.glob("gen-*.npz")):
            match = _RECORD.fullmatch(path.name)
            if not match or (generation is not None and int(match.group(1)) != generation):
                continue
            with np.load(path, allow_pickle=False) as z:
                if field not in z.files:
                    continue
                where = np.flatnonzero((z["slots"] == slot) & z["ok"])
                if len(where):
                    yield int(match.group(1)), path, int(where[0])

    def real_vs_real(self, run_id: str) -> dict[str, float]:
        """A batched run's real-vs-real reference metrics (stored with generation 1), or {}."""
        for _, path, row in self._records(run_id, "real_vs_real", generation=1):
            with np.load(path, allow_pickle=False) as z:
                return {str(k): float(v) for k, v in zip(z["real_vs_real_names"], z["real_vs_real"][row])}
        return {}

    def generations(self, run_id: str) -> list[int]:
        return sorted({t for t, _, _ in self._records(run_id)})

    def samples(self, run_id: str, generation: int):
        for t, path, row in self._records(run_id):
            if t == generation:
                with np.load(path, allow_pickle=False) as z:
                    return Samples(z["samples"][row].astype(np.float32))
        raise FileNotFoundError(f"{run_id}: no stored samples of generation {generation}")
