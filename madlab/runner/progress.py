"""Progress of a sweep: the driver's status line, and the workers' batched reports feeding it."""
from __future__ import annotations

import math
import sys
import time

from madlab.runner.eta import CostModel

#: how often a worker sends progress to the driver (never per generation for cheap runs)
PROGRESS_FLUSH_S = 2.0


class Progress:
    """One status line: runs and generations done / total, failures, elapsed, ETA.

    The ETA is weighted by what each kind of run costs per generation (:class:`madlab.runner.eta.CostModel`):
    a sweep of cheap Gaussian fits and minute-long DDPM fits is not priced as if every generation
    cost the same. Kinds not yet timed are counted (``+N kinds untimed``) instead of guessed.
    On a terminal the line is redrawn in place; in a log it is printed at most every ``every``
    seconds, so a day-long run gives a readable, bounded log.
    """

    def __init__(self, total_runs: int, total_generations: int, stream=None, every: float = 10.0,
                 cost: CostModel | None = None):
        self.total_runs, self.total_generations = total_runs, total_generations
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self.start = time.monotonic()
        self.last_print = -math.inf
        self.cost = cost

    def due(self) -> bool:
        return time.monotonic() - self.last_print >= (1.0 if self.tty else self.every)

    def note(self, message: str) -> None:
        """One-time work the user would otherwise wait through in silence."""
        self.stream.write(("\n" if self.tty else "") + f"[madlab] {message}\n")
        self.stream.flush()

    def update(self, runs_done: int, generations_done: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        self.last_print = now
        eta = "-"
        if self.cost is not None and generations_done < self.total_generations:
            seconds, untimed = self.cost.eta()
            if seconds is not None:
                eta = (f">{duration(seconds)} (+{untimed} kind{'s' if untimed > 1 else ''} of run untimed)"
                       if untimed else duration(seconds))
        line = (f"[madlab] runs {runs_done}/{self.total_runs}  generations {generations_done}/"
                f"{self.total_generations}  failed {failed}  elapsed {duration(now - self.start)}  eta {eta}")
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def report_of(t: int, seconds: float) -> dict:
    """One published generation as progress: the last generation and the timings, a run's first
    generation (which pays its set-up) apart from the later ones."""
    first = t == 1
    return {"t": t, "seconds": 0.0 if first else seconds, "count": 0 if first else 1,
            "first_seconds": seconds if first else 0.0, "first_count": 1 if first else 0}


def merge_report(old: dict | None, new: dict) -> dict:
    if old is None:
        return dict(new)
    return {"t": max(old["t"], new["t"]), **{k: old[k] + new[k] for k in new if k != "t"}}


def observe_report(cost: CostModel, run_id: str, report: dict) -> None:
    cost.observe(run_id, report["count"], report["seconds"])
    cost.observe(run_id, report["first_count"], report["first_seconds"], first=True)


class Reporter:
    """Worker side: batches (run, generation, compute seconds) progress and sends it to the driver's
    tracker (a Ray actor with an ``update`` method) at most every few seconds."""

    def __init__(self, tracker):
        self.tracker, self.pending, self.sent_at = tracker, {}, time.monotonic()

    def __call__(self, run_id: str, t: int, seconds: float = 0.0) -> None:
        self.pending[run_id] = merge_report(self.pending.get(run_id), report_of(t, seconds))
        if time.monotonic() - self.sent_at >= PROGRESS_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.tracker is not None:
            self.tracker.update.remote(self.pending)
        self.pending, self.sent_at = {}, time.monotonic()
