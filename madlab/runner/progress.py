"""Progress of a sweep: the driver's status line, and the workers' batched reports feeding it."""
from __future__ import annotations

import math
import sys
import time

#: how often a worker sends progress to the driver (never per generation for cheap runs)
PROGRESS_FLUSH_S = 2.0


class Progress:
    """One status line: runs and generations done / total, failures, elapsed, ETA.

    On a terminal the line is redrawn in place; in a log it is printed at most every
    ``every`` seconds, so a day-long run gives a readable, bounded log.
    """

    def __init__(self, total_runs: int, total_generations: int, stream=None, every: float = 10.0):
        self.total_runs, self.total_generations = total_runs, total_generations
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self.start = time.monotonic()
        self.last_print = -math.inf
        self.baseline = None

    def due(self) -> bool:
        return time.monotonic() - self.last_print >= (1.0 if self.tty else self.every)

    def update(self, runs_done: int, generations_done: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.baseline is None:
            self.baseline = generations_done
        self.last_print = now
        elapsed = now - self.start
        rate_done = generations_done - self.baseline
        remaining = self.total_generations - generations_done
        eta = duration(elapsed / rate_done * remaining) if rate_done > 0 and remaining > 0 else "-"
        line = (f"[madlab] runs {runs_done}/{self.total_runs}  generations {generations_done}/"
                f"{self.total_generations}  failed {failed}  elapsed {duration(elapsed)}  eta {eta}")
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


class Reporter:
    """Worker side: batches (run, generation) progress and sends it to the driver's tracker
    (a Ray actor with an ``update`` method) at most every few seconds."""

    def __init__(self, tracker):
        self.tracker, self.pending, self.sent_at = tracker, {}, time.monotonic()

    def __call__(self, run_id: str, t: int) -> None:
        self.pending[run_id] = t
        if time.monotonic() - self.sent_at >= PROGRESS_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.tracker is not None:
            self.tracker.update.remote(self.pending)
        self.pending, self.sent_at = {}, time.monotonic()
