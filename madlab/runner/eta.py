"""A sweep's ETA weighted by what its generations cost, learned while it runs.

A sweep mixes generations that take milliseconds (a Gaussian fit) with ones that take minutes (a
DDPM fit), so "generations left / generations per second so far" swings between absurd values as
the mix of finished work changes. Instead each run belongs to a *kind* (generator and its resolved
parameters, dataset, sizes, scheme): runs of one kind cost about the same per generation. Workers
report the compute seconds of every generation they publish; the mean per kind prices the
generations still to do, and the cluster's measured throughput (compute seconds delivered per
wall-clock second, which counts however many workers run at once) turns that into wall time.
A run's first generation is priced apart from its later ones: it pays the run's set-up (the real
reference set's statistics, a worker's first imports), which would otherwise inflate the price of
every later generation. Kinds with no finished generation yet are priced at the mean of measured
kinds of the same cheapness when there are any, and otherwise left out; the ETA then says how many
kinds it could not time, so it is a floor, never a guess presented as a figure.
"""
from __future__ import annotations

import json
import time


def run_kind(config: dict, cheap: bool) -> tuple:
    """What makes two runs cost the same per generation."""
    loop = config["loop"]
    generator = config.get("generator_resolved") or config["generator"]
    return (bool(cheap), config["generator"]["name"], json.dumps(generator, sort_keys=True),
            json.dumps(config["dataset"], sort_keys=True), loop["scheme"], loop["n_real"], loop.get("n_initial"),
            loop["n_synthetic"], (config.get("metrics") or {}).get("n_eval"))


class CostModel:
    """``observe`` the compute seconds of finished generations, ``eta`` the wall time left."""

    def __init__(self, kinds: dict[str, tuple], total: dict[str, int], done: dict[str, int], *, clock=time.monotonic):
        self.kinds, self.total = kinds, total
        self.done = dict(done)
        self.seconds: dict[tuple, float] = {}  # keyed by (kind, first generation?)
        self.count: dict[tuple, int] = {}
        self.compute = 0.0
        self.clock = clock
        self.started: float | None = None  # when the first timed work began (start-up waits excluded)

    def observe(self, run_id: str, generations: int, seconds: float, *, first: bool = False) -> None:
        """``generations`` more generations of ``run_id`` finished, costing ``seconds`` of compute;
        ``first``: they are the run's first generation."""
        if generations <= 0:
            return
        if self.started is None:
            self.started = self.clock() - seconds
        key = (self.kinds[run_id], first)
        self.done[run_id] = self.done.get(run_id, 0) + generations
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.count[key] = self.count.get(key, 0) + generations
        self.compute += seconds

    def set_done(self, run_id: str, generations: int) -> None:
        """A run's generation count learned without timings (e.g. a finished unit's outcome)."""
        self.done[run_id] = max(self.done.get(run_id, 0), generations)

    def cost(self, kind: tuple, first: bool = False) -> float | None:
        """Expected seconds of one generation of ``kind`` (its first, or a later one)."""
        for key in ((kind, first), (kind, not first)):
            if self.count.get(key):
                return self.seconds[key] / self.count[key]
        alike = [self.seconds[k] / self.count[k] for k in self.count if self.count[k] and k[0][0] == kind[0]]
        return sum(alike) / len(alike) if alike else None

    def eta(self) -> tuple[float | None, int]:
        """(seconds left, or None before anything was timed; number of kinds with work left that
        could not be priced, whose work the figure leaves out)."""
        if self.started is None or self.compute <= 0:
            return None, 0
        elapsed = max(self.clock() - self.started, 1e-9)
        throughput = self.compute / elapsed
        left, untimed = 0.0, set()
        for run_id, kind in self.kinds.items():
            done = self.done.get(run_id, 0)
            remaining = self.total[run_id] - done
            if remaining <= 0:
                continue
            later, first = self.cost(kind), self.cost(kind, first=True) if done == 0 else 0.0
            if later is None:
                untimed.add(kind)
            else:
                left += (remaining - (done == 0)) * later + (first or 0.0)
        return left / throughput, len(untimed)
