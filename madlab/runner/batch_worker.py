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
    attempt = _BatchAttempt(jobs, location, fault_hook, report)
    attempt.run()
    return attempt.outcomes()


class _BatchAttempt:
    """One attempt at a batch: its engine, records and run folders, and what it reports back."""

    def __init__(self, jobs, location, fault_hook, report):
        self.start = time.perf_counter()
        self.jobs, self.location, self.fault_hook, self.report = jobs, location, fault_hook, report
        self.stores = [RunStore(job.run_dir) for job in jobs]
        self.configs = [RunConfig.model_validate(job.config) for job in jobs]
        self.batch = batch = BatchLoop(self.configs)
        self.records = BatchStore(location, [job.run_id for job in jobs])
        self.records.write_members()
        self.records.restore(batch)
        self.last = batch.loop.generations
        for slot, store in enumerate(self.stores):  # a rerun retries failed runs, as Loop.run does
            if batch.done[slot] < self.last and store.failure() is not None:
                store.clear_failure()
                batch.failed[slot] = False
        self.isolate = _attempt(self.records, batch, self.stores)
        self.compute, self.n, self.timings = 0.0, 0, {}
        self.keep = keep_samples(batch)
        self.hooks = [_HookLoop(s) for s in self.stores]
        self.saved_at, self.pending = _clock(), False

    def save_state(self, force: bool = False) -> None:
        """Rewrite ``state.npz`` when generations are pending and ``STATE_EVERY_SECONDS`` passed (or ``force``)."""
        if self.pending and (force or _clock() - self.saved_at >= STATE_EVERY_SECONDS):
            self.records.write_state(self.batch)
            self.saved_at, self.pending = _clock(), False

    def advance(self, slots: np.ndarray, t: int) -> None:
        """Generation ``t`` of ``slots``: fault hooks, the batched step, its records, the counters."""
        live = []
        for slot in slots:
            try:
                if self.fault_hook is not None:
                    self.fault_hook(self.hooks[slot], t)
                live.append(slot)
            except RunFailed as exc:
                self.stores[slot].mark_failed(t, str(exc))
                self.batch.failed[slot] = True
        if not live:
            return
        result = self.batch.step(t, np.asarray(live, dtype=np.int64))
        for slot, message in result.failures.items():
            self.stores[slot].mark_failed(t, message)
        self.records.write_generation(result, self.batch.evaluator.metadata, self.keep)
        self.pending = True
        self.save_state()
        seconds = result.seconds
        self.compute += seconds["fit"] + seconds["sample"] + seconds["metrics"]
        self.n += len(live) - len(result.failures)
        for phase, value in seconds.items():
            self.timings[phase] = self.timings.get(phase, 0.0) + value
        if self.report is not None:
            for slot in live:
                if slot not in result.failures:
                    self.report(self.jobs[slot].run_id, t)

    def run(self) -> None:
        """Every member to the last generation (one at a time when isolating); the state kept on exit."""
        batch, records, location = self.batch, self.records, self.location
        with compute_threads(self.configs[0].resources.num_cpus):
            groups = ([[s] for s in np.flatnonzero(~batch.failed & (batch.done < self.last))] if self.isolate
                      else [None])
            try:
                for group in groups:
                    if self.isolate:
                        self.save_state(force=True)  # the run about to be isolated may kill this worker
                        location.write_json(f"{records.dir}/ISOLATE", {"slot": int(group[0])})
                    self._advance_all(np.arange(batch.size) if group is None else np.asarray(group))
            except BaseException:
                if not batch.advancing:  # interrupted between generations: keep what is done
                    try:
                        self.save_state(force=True)
                    except BaseException:
                        pass
                raise
            self.save_state(force=True)
            location.delete(f"{records.dir}/ISOLATE")
            location.delete(f"{records.dir}/ATTEMPT")

    def _advance_all(self, members: np.ndarray) -> None:
        batch = self.batch
        while True:
            live = members[~batch.failed[members] & (batch.done[members] < self.last)]
            if not len(live):
                break
            t = int(batch.done[live].min()) + 1
            self.advance(live[batch.done[live] == t - 1], t)

    def outcomes(self) -> list[Outcome]:
        """Each member's outcome; the batch's time and counters are shared out (all on slot 0)."""
        jobs, stores = self.jobs, self.stores
        failures = {job.run_id: store.failure() for job, store in zip(jobs, stores)}
        rows = batch_rows(self.records, jobs, failures)
        done = self.records.published()
        elapsed = time.perf_counter() - self.start
        share = 1 / len(jobs)
        return [Outcome(job.run_id, "failed" if failures[job.run_id] else "ok",
                        failures[job.run_id]["error"] if failures[job.run_id] else None, [rows[job.run_id]],
                        int(done[slot]), elapsed * share, self.compute * share,
                        self.n if slot == 0 else 0, dict(self.timings) if slot == 0 else {})
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
