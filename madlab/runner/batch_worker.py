"""Running a batch of cheap runs in a worker: resume, faults, records, progress, table rows.

The batched counterpart of :func:`madlab.runner.jobs.run_jobs`, with the same guarantees:

* resume at generation granularity from the batch's published records (:mod:`madlab.engine.batched.records`);
* a run that raises (non-finite samples, an injected ``raise`` fault) is recorded in its FAILED
  marker and the table; it stays frozen at its last good generation and the other runs go on;
  running the sweep again retries it, as for a run of its own;
* the batch's state (``state.npz``: sample history, pooled statistics, up to a few hundred MB for a
  large batch) is rewritten at most every ``STATE_EVERY_SECONDS`` of work, after a generation's
  records, and always when the batch finishes or is interrupted between generations: rewriting it
  every generation was a third of a large batch's time. A worker killed in between redoes the
  generations since that state, which are deterministic: it rewrites the same records;
* a worker process that dies (``kill``/``crash`` faults, OOM, a lost node) is retried by the
  runner. An ``ATTEMPT`` marker says how far the batch was when an attempt started: if the
  next attempt finds no progress since, it advances the runs one at a time, naming each in an
  ``ISOLATE`` marker first, and the attempt after a death in isolation marks that run failed
  ("worker died repeatedly"): one poison run cannot sink its batch-mates.
"""
from __future__ import annotations

import time

import numpy as np

from madlab.core.errors import RunFailed
from madlab.engine.batched.loop import BatchLoop
from madlab.engine.batched.records import BatchStore, batch_rows, keep_samples
from madlab.engine.loop import compute_threads
from madlab.runner.outcome import Outcome
from madlab.schema.config import RunConfig
from madlab.store.storage import RunStore

#: the most seconds of generations a killed worker redoes on resume (see the module docstring)
STATE_EVERY_SECONDS = 10.0


def _clock() -> float:
    return time.perf_counter()


class _HookLoop:
    """What a fault hook looks at (``loop.store``), for one run of a batch."""

    def __init__(self, store: RunStore):
        self.store = store


def run_batch(jobs, location, fault_hook=None, report=None) -> list:
    """Run (or resume) the batch ``jobs`` (every member, in slot order) to completion."""
    start = time.perf_counter()
    stores = [RunStore(job.run_dir) for job in jobs]
    configs = [RunConfig.model_validate(job.config) for job in jobs]
    batch = BatchLoop(configs)
    records = BatchStore(location, [job.run_id for job in jobs])
    records.write_members()
    records.restore(batch)
    last = batch.loop.generations
    for slot, store in enumerate(stores):  # a rerun retries failed runs, as Loop.run does
        if batch.done[slot] < last and store.failure() is not None:
            store.clear_failure()
            batch.failed[slot] = False
    isolate = _attempt(records, batch, stores)
    counters = {"compute": 0.0, "n": 0, "timings": {}}
    keep = keep_samples(batch)
    hooks = [_HookLoop(s) for s in stores]
    saved = {"at": _clock(), "pending": False}

    def save_state(force: bool = False) -> None:
        if saved["pending"] and (force or _clock() - saved["at"] >= STATE_EVERY_SECONDS):
            records.write_state(batch)
            saved["at"], saved["pending"] = _clock(), False

    def advance(slots: np.ndarray, t: int) -> None:
        live = []
        for slot in slots:
            try:
                if fault_hook is not None:
                    fault_hook(hooks[slot], t)
                live.append(slot)
            except RunFailed as exc:
                stores[slot].mark_failed(t, str(exc))
                batch.failed[slot] = True
        if not live:
            return
        result = batch.step(t, np.asarray(live, dtype=np.int64))
        for slot, message in result.failures.items():
            stores[slot].mark_failed(t, message)
        records.write_generation(result, batch.evaluator.metadata, keep)
        saved["pending"] = True
        save_state()
        seconds = result.seconds
        counters["compute"] += seconds["fit"] + seconds["sample"] + seconds["metrics"]
        counters["n"] += len(live) - len(result.failures)
        for phase, value in seconds.items():
            counters["timings"][phase] = counters["timings"].get(phase, 0.0) + value
        if report is not None:
            for slot in live:
                if slot not in result.failures:
                    report(jobs[slot].run_id, t)

    with compute_threads(configs[0].resources.num_cpus):
        groups = [[s] for s in np.flatnonzero(~batch.failed & (batch.done < last))] if isolate else [None]
        try:
            for group in groups:
                if isolate:
                    save_state(force=True)  # the run about to be isolated may kill this worker
                    location.write_json(f"{records.dir}/ISOLATE", {"slot": int(group[0])})
                members = np.arange(batch.size) if group is None else np.asarray(group)
                while True:
                    live = members[~batch.failed[members] & (batch.done[members] < last)]
                    if not len(live):
                        break
                    t = int(batch.done[live].min()) + 1
                    advance(live[batch.done[live] == t - 1], t)
        except BaseException:
            if not batch.advancing:  # interrupted between generations: keep what is done
                try:
                    save_state(force=True)
                except BaseException:
                    pass
            raise
        save_state(force=True)
        location.delete(f"{records.dir}/ISOLATE")
        location.delete(f"{records.dir}/ATTEMPT")
    failures = {job.run_id: store.failure() for job, store in zip(jobs, stores)}
    rows = batch_rows(records, jobs, failures)
    done = records.published()
    elapsed = time.perf_counter() - start
    share = 1 / len(jobs)
    return [Outcome(job.run_id, "failed" if failures[job.run_id] else "ok",
                    failures[job.run_id]["error"] if failures[job.run_id] else None, [rows[job.run_id]],
                    int(done[slot]), elapsed * share, counters["compute"] * share,
                    counters["n"] if slot == 0 else 0, dict(counters["timings"]) if slot == 0 else {})
            for slot, job in enumerate(jobs)]


def _attempt(records: BatchStore, batch: BatchLoop, stores) -> bool:
    """Record this attempt; True when the previous one died without progress (isolate the runs)."""
    location = records.location
    progress = int(batch.done.sum())
    isolated = f"{records.dir}/ISOLATE"
    if location.exists(isolated):  # the previous attempt died advancing this run alone
        slot = int(location.read_json(isolated)["slot"])
        if batch.done[slot] < batch.loop.generations:
            stores[slot].mark_failed(int(batch.done[slot]) + 1, "worker died repeatedly (while running this run alone)")
            batch.failed[slot] = True
        location.delete(isolated)
        location.write_json(f"{records.dir}/ATTEMPT", {"progress": progress})
        return True
    marker = f"{records.dir}/ATTEMPT"
    previous = location.read_json(marker)["progress"] if location.exists(marker) else None
    location.write_json(marker, {"progress": progress})
    return previous is not None and previous >= progress
