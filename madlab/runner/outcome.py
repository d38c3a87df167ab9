"""What a worker reports for each run it was given: status, table rows, progress and timings."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    run_id: str
    status: str  # "ok" | "failed"
    error: str | None
    rows: list = field(default_factory=list)
    last_done: int = 0
    seconds: float = 0.0  # wall time in the worker for this call
    compute: float = 0.0  # of which fit + sample + metrics (from the DONE records)
    generations_run: int = 0  # generations computed in this call (not resumed)
    timings: dict = field(default_factory=dict)  # seconds per step phase (data, fit, sample, metrics, publish), summed
    window: tuple = ()  # (start, end) wall-clock time.time() of this call in the worker
    node: str = ""  # the Ray node that ran this call (set by the Ray task)
