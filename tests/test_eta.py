"""The sweep ETA prices remaining generations by what their kind of run costs."""
from __future__ import annotations

import pytest

from madlab.runner.eta import CostModel


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


def test_the_sweep_prints_a_cost_weighted_eta(write_spec, tmp_path):
    import io

    from madlab.specs import load_spec
    from madlab.runner import Runner

    spec = {"name": "eta", "dataset": {"name": "gaussian", "dim": 2}, "generator": {"name": "gaussian"},
            "loop": {"scheme": "fully-synthetic", "generations": 30, "n_real": 50, "n_synthetic": 50},
            "sweep": {"seed": [0, 1]}}
    stream = io.StringIO()
    summary = Runner(load_spec(write_spec(spec)), tmp_path / "out", use_ray=False, stream=stream,
                     progress_every=0.0).run()
    assert not summary.failed
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("[madlab] runs")]
    assert lines[0].endswith("eta -")  # nothing timed yet: no figure
    running = [line for line in lines[1:] if "generations 60/60" not in line]
    etas = [line.rsplit("eta ", 1)[1] for line in running]
    assert etas and all(e[0].isdigit() for e in etas), etas  # e.g. "0m01s": priced, one kind, all timed
    minutes, seconds = etas[0].split("m")
    # the first generation's set-up is not charged to the 59 after it (that once gave 42 s for a 2 s sweep)
    assert int(minutes) * 60 + int(seconds.rstrip("s")) <= 10 * max(summary.seconds, 1.0), (etas, summary.seconds)


def test_the_lenet_extractor_is_announced_and_trained_once_as_the_runs_start(write_spec, tmp_path, monkeypatch):
    import io

    from madlab.specs import load_spec
    from madlab.features import feature_extractor_lenet as lenet
    from madlab.runner.folder import plan_jobs
    from madlab.runner.progress import Progress
    from madlab.runner.warmup import prepare_extractors

    trained = []
    monkeypatch.setattr(lenet, "lenet_weights_cached", lambda directory=None: bool(trained))
    monkeypatch.setattr(lenet, "ensure_lenet_weights", lambda *a, **k: trained.append(1))
    spec = {"name": "le", "dataset": {"name": "mnist5k"}, "generator": {"name": "ddpm"},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 100, "n_synthetic": 100},
            "sweep": {"seed": [0, 1, 2]}}
    jobs = plan_jobs(load_spec(write_spec(spec)), str(tmp_path / "out"))
    stream = io.StringIO()
    training = prepare_extractors(jobs, Progress(3, 6, stream), local=True)
    training.join(timeout=30)  # it trains in the background while the runs start
    assert trained == [1] and "training the LeNet feature extractor once" in stream.getvalue()
    assert prepare_extractors(jobs, Progress(3, 6, stream), local=True) is None  # cached now: silent, no training
    assert trained == [1] and stream.getvalue().count("training the LeNet") == 1
