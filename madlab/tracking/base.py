"""What every tracker sink implements, and what it is told about a sweep and its runs.

A sink mirrors the table into one tracker. The dispatcher (:mod:`madlab.tracking.dispatch`)
calls it from one background thread, in this order::

    sink = SinkClass(target, sweep)
    held = sink.start()                # {run_id: (last generation in the tracker, "ok" | "failed" | None)}
    sink.log(run, {t: {metric: value}})  # generations after what is logged, in order, whole
    sink.end(run, "ok" | "failed", reason)
    sink.close()

The no-duplicates rule lives in the dispatcher: it sends a generation only if it is after the
last one ``start`` (or an earlier ``log``) reported, and ends a run again only if its status
changed (a failed run that a resume finished). A sink's part is to make ``log`` of a
generation all-or-nothing as seen by its next ``start`` (MLflow: one ``log_batch`` carrying the
marker tag; TensorBoard: a purge step; W&B: one history record per generation).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from madlab.tracking.targets import Target

#: the table's row for a failed run (value NaN, reason in ``error``): a status, not a metric
FAILED_METRIC = "failed"

Points = dict[int, dict[str, float]]


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    config: dict
    swept: dict
    generations: int
    #: the run's local folder (None: vectorised, or on an object store); image runs have a grid per generation
    run_dir: str | None = None

    def grid(self, t: int) -> str | None:
        """Generation t's sample grid (``gen-XXXX/grid.png``), when the run has one on this machine."""
        if self.run_dir is None:
            return None
        path = os.path.join(self.run_dir, f"gen-{t:04d}", "grid.png")
        return path if os.path.isfile(path) else None

    def tags(self) -> dict[str, str]:
        """Scheme, λ, seed, generator, dataset, and the sweep keys, as strings."""
        loop = self.config["loop"]
        tags = {"scheme": loop["scheme"], "bias": loop["bias"], "seed": self.config["seed"],
                "generator": self.config["generator"]["name"], "dataset": self.config["dataset"]["name"]}
        tags.update(self.swept)
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()}

    def params(self) -> dict[str, object]:
        """The resolved config, flattened to dotted keys (lists as JSON)."""
        return flatten(self.config)


@dataclass(frozen=True)
class SweepInfo:
    name: str
    #: the results folder: a sweep in a tracker is the sweep of one results folder
    results: str
    runs: tuple[RunInfo, ...]

    @property
    def key(self) -> str:
        """A short stable id of the results folder, for trackers that want one (W&B run ids)."""
        return hashlib.sha256(self.results.encode()).hexdigest()[:12]

    def run(self, run_id: str) -> RunInfo:
        return self._index()[run_id]

    def _index(self) -> dict[str, RunInfo]:
        index = self.__dict__.get("_by_id")
        if index is None:
            index = {r.run_id: r for r in self.runs}
            object.__setattr__(self, "_by_id", index)
        return index


@runtime_checkable
class Sink(Protocol):
    def __init__(self, target: Target, sweep: SweepInfo): ...

    def start(self) -> dict[str, tuple[int, str | None]]: ...

    def log(self, run: RunInfo, points: Points) -> None: ...

    def end(self, run: RunInfo, status: str, error: str | None) -> None: ...

    def close(self) -> None: ...


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple, dict)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def points_of(rows: list) -> tuple[Points, tuple[int, str] | None]:
    """Table rows (dicts or RowBlocks) of one run -> ``{generation: {metric: value}}``, and
    ``(generation, reason)`` when the rows record a failure."""
    points: Points = {}
    failure = None
    for block in rows:
        if isinstance(block, dict):
            items = [(block["generation"], block["metric"], block["value"], block.get("error"))]
        else:
            columns = block.columns
            errors = columns.get("error") or [block.common.get("error")] * len(block)
            items = zip(columns["generation"], columns["metric"], columns["value"], errors)
        for t, metric, value, error in items:
            if metric == FAILED_METRIC:
                failure = (int(t), str(error or "failed"))
            else:
                points.setdefault(int(t), {})[str(metric)] = float(value)
    return dict(sorted(points.items())), failure
