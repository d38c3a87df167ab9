"""The sweep ETA prices remaining generations by what their kind of run costs."""
from __future__ import annotations

import pytest

from madlab.eta import CostModel


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _model(clock, cheap_runs=100, heavy_runs=2, heavy_gens=5):
    kinds = {f"c{i}": (True, "gaussian") for i in range(cheap_runs)}
    kinds.update({f"h{i}": (False, "ddpm") for i in range(heavy_runs)})
    total = {r: (10 if r.startswith("c") else heavy_gens) for r in kinds}
    return CostModel(kinds, total, {}, clock=clock)


def test_an_untimed_kind_is_left_out_and_counted():
    clock = Clock()
    model = _model(clock)
    assert model.eta() == (None, 0)
    clock.now = 1.0
    model.observe("c0", 10, 0.1)  # a cheap run finished: 10 ms a generation, one worker busy
    seconds, untimed = model.eta()
    assert untimed == 1  # the DDPM runs have not been timed: the figure is a floor
    assert seconds == pytest.approx(99 * 10 * 0.01 / (0.1 / 0.1))


def test_heavy_generations_dominate_once_timed():
    clock = Clock()
    model = _model(clock, cheap_runs=10, heavy_runs=2, heavy_gens=5)
    clock.now = 60.0
    model.observe("h0", 1, 60.0)  # two workers in parallel, a minute per DDPM generation
    clock.now = 61.0
    model.observe("h1", 1, 61.0)
    seconds, untimed = model.eta()
    assert untimed == 1  # the cheap kind is still untimed (no cheap kind measured to borrow from)
    cost = (60.0 + 61.0) / 2
    throughput = (60.0 + 61.0) / 61.0  # about two workers' worth
    assert seconds == pytest.approx(8 * cost / throughput)
    assert 230 < seconds < 250  # 8 generations left on 2 workers at ~1 min each: ~4 minutes


def test_an_untimed_kind_borrows_the_cost_of_measured_kinds_alike():
    clock = Clock()
    kinds = {"a": (False, "gan"), "b": (False, "flow")}
    model = CostModel(kinds, {"a": 3, "b": 3}, {}, clock=clock)
    clock.now = 30.0
    model.observe("a", 1, 30.0)
    seconds, untimed = model.eta()
    assert untimed == 0 and seconds == pytest.approx((2 + 3) * 30.0)


def test_finished_runs_cost_nothing():
    clock = Clock()
    model = CostModel({"a": (False, "gan")}, {"a": 2}, {"a": 1}, clock=clock)
    clock.now = 5.0
    model.observe("a", 1, 5.0)
    assert model.eta() == (0.0, 0)
