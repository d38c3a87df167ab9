"""The driver side of tracking: one background thread feeds every sink from what is published.

The driver tells the :class:`Dispatcher` two things, each a dict update under a lock (no I/O on
the driver's thread): a run has published generations up to ``t`` (:meth:`published`, read back
from the run's DONE records by the thread), and a run has finished, with its table rows
(:meth:`finished`). The thread wakes every ``flush_s`` seconds and sends each sink, per run, the
generations it has not logged yet, in one call: at most one call per run and flush, whatever
the number of generations published meanwhile.

Resume: each sink's ``start`` reports what the tracker already holds; a generation at or before
that is never sent again. Failures: a sink that raises is reported once (later errors are
counted), backed off, and retried on later flushes; the sweep and its table never see it.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field

from madlab.store.storage import RunStore
from madlab.tracking.base import RunInfo, SweepInfo, points_of
from madlab.tracking.registry import get_sink_class
from madlab.tracking.targets import Target

#: how often the thread sends what was published (seconds)
FLUSH_S = 2.0
#: how long the end of a sweep waits for the trackers to take the last points (seconds)
CLOSE_S = 120.0
#: the longest pause after a sink error before it is tried again (seconds)
MAX_BACKOFF_S = 30.0


@dataclass
class _Feed:
    """One sink and what it holds: the last generation logged and the runs ended, per run."""
    target: Target
    sink: object = None
    logged: dict[str, int] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)  # run id -> the status the tracker shows
    dirty: set[str] = field(default_factory=set)
    errors: int = 0
    retry_at: float = 0.0


class Dispatcher:
    def __init__(self, targets: list[Target], sweep: SweepInfo, run_dirs: dict[str, str | None], *,
                 stream=None, flush_s: float = FLUSH_S, results: str | None = None):
        self.sweep, self.run_dirs = sweep, run_dirs
        self.stream = stream or sys.stderr
        self.flush_s = flush_s
        self.results = results or sweep.results
        self.feeds = [_Feed(t) for t in targets]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._published: dict[str, int] = {}
        self._finished: dict[str, tuple[list, str, str | None]] = {}  # rows, status, error
        self._thread = threading.Thread(target=self._loop, name="madlab-tracking", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the driver's side
    def published(self, run_id: str, t: int) -> None:
        """Run ``run_id`` has published generations 1..t (a run folder's DONE records say what)."""
        if t <= 0 or self.run_dirs.get(run_id) is None:
            return  # batched runs: their rows come with their outcome
        with self._lock:
            if t > self._published.get(run_id, 0):
                self._published[run_id] = t
                for feed in self.feeds:
                    feed.dirty.add(run_id)

    def finished(self, outcomes) -> None:
        """Outcomes of finished runs (``madlab.runner.jobs.Outcome``: ``run_id, status, error, rows``).
        A status other than ok / failed (a back-filled run that had not finished) only logs the rows."""
        with self._lock:
            for outcome in outcomes:
                self._finished[outcome.run_id] = (outcome.rows, outcome.status, outcome.error)
                for feed in self.feeds:
                    feed.dirty.add(outcome.run_id)

    def close(self, timeout: float | None = -1.0) -> None:
        """Send what is left, then close every sink; waits at most ``timeout`` seconds (default
        ``CLOSE_S``; None: until done)."""
        timeout = CLOSE_S if timeout == -1.0 else timeout
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._say(f"tracking: still sending after {timeout:.0f} s; stopped waiting "
                      f"(`madlab track {self.results} --to NAME` fills in what is missing)")

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        while True:
            closing = self._closing
            for feed in self.feeds:
                self._flush(feed, final=closing)
            if closing:
                break
            self._wake.wait(self.flush_s)
            self._wake.clear()
        for feed in self.feeds:
            self._close(feed)

    def _flush(self, feed: _Feed, final: bool) -> None:
        if not final and time.monotonic() < feed.retry_at:
            return
        try:
            if feed.sink is None:
                sink = get_sink_class(feed.target.name)(feed.target, self.sweep)
                held = sink.start()
                feed.logged = {**{r: t for r, (t, _) in held.items()}, **feed.logged}
                feed.ended = {**{r: status for r, (_, status) in held.items() if status}, **feed.ended}
                feed.sink = sink
            with self._lock:
                dirty, feed.dirty = feed.dirty, set()
            records: dict[tuple[str, int], dict] = {}
            for run_id in sorted(dirty):
                try:
                    self._send(feed, run_id, records)
                except BaseException:
                    with self._lock:
                        feed.dirty.add(run_id)
                        feed.dirty.update(dirty)
                    raise
        except Exception as exc:  # noqa: BLE001 - a tracker must never fail the sweep
            self._error(feed, exc)

    def _send(self, feed: _Feed, run_id: str, records: dict) -> None:
        with self._lock:
            published = self._published.get(run_id, 0)
            finished = self._finished.get(run_id)
        run = self.sweep.run(run_id)
        logged = feed.logged.get(run_id, 0)
        points, failure = points_of(finished[0]) if finished else ({}, None)
        for t in range(logged + 1, published + 1):
            if t not in points:
                if (run_id, t) not in records:
                    records[run_id, t] = _read_metrics(self.run_dirs[run_id], t)
                points[t] = records[run_id, t]
        points = {t: m for t, m in sorted(points.items()) if t > logged}
        if points:
            feed.sink.log(run, points)
            feed.logged[run_id] = max(points)
        if finished and finished[1] in ("ok", "failed") and feed.ended.get(run_id) != finished[1]:
            error = (failure[1] if failure else None) or finished[2]  # the table's reason first
            feed.sink.end(run, finished[1], error.strip().splitlines()[0] if error and error.strip() else error)
            feed.ended[run_id] = finished[1]

    def _close(self, feed: _Feed) -> None:
        if feed.sink is not None:
            try:
                feed.sink.close()
            except Exception as exc:  # noqa: BLE001
                self._error(feed, exc)
        if feed.errors:
            self._say(f"tracking: {feed.target.name}: {feed.errors} error(s) in all; the results folder is complete: "
                      f"`madlab track {self.results} --to {feed.target.name}` fills in what is missing")

    def _error(self, feed: _Feed, exc: Exception) -> None:
        feed.errors += 1
        feed.retry_at = time.monotonic() + min(MAX_BACKOFF_S, self.flush_s * 2 ** feed.errors)
        if feed.errors == 1:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._say(f"tracking: {feed.target.label()}: {type(exc).__name__}: {reason} "
                      f"(the sweep goes on; later errors of this tracker are counted, not shown)")

    def _say(self, message: str) -> None:
        try:
            self.stream.write(f"[madlab] {message}\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not kill the thread
            pass


def _read_metrics(run_dir: str, t: int) -> dict[str, float]:
    return {k: float(v) for k, v in RunStore(run_dir).record(t)["metrics"].items()}


def open_tracking(targets: list[Target], results: str, name: str, jobs, done: dict[str, int], *,
                  stream=None, flush_s: float = FLUSH_S) -> Dispatcher | None:
    """The dispatcher of a sweep's ``jobs`` (``madlab.runner.jobs.Job``), or None when nothing is tracked.

    Runs partly done before (``done``: last published generation) are announced at once, so a
    resumed sweep first fills in what an interrupted driver had not sent."""
    if not targets:
        return None
    local = {j.run_id: j.run_dir if j.batch is None and os.path.isdir(j.run_dir) else None for j in jobs}
    sweep = SweepInfo(name, results, tuple(RunInfo(j.run_id, j.config, j.swept, j.generations, local[j.run_id])
                                           for j in jobs))
    dispatcher = Dispatcher(targets, sweep, {j.run_id: None if j.batch is not None else j.run_dir for j in jobs},
                            stream=stream, flush_s=flush_s)
    for run_id, t in done.items():
        dispatcher.published(run_id, t)
    return dispatcher
