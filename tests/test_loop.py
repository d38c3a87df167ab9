"""Reproducibility and resume: same config and seed -> same table; interrupted == uninterrupted."""
import numpy as np
import pandas as pd
import pytest

from madlab.config import build_spec
from madlab.errors import RunFailed
from madlab.loop import Loop
from madlab.runner import Runner
from madlab.table import read_table

from conftest import gaussian_spec


def quiet():
    return open("/dev/null", "w")


def sweep_spec():
    spec = gaussian_spec(scheme="fresh-real", generations=5, n_real=30, n_synthetic=30, n_initial=50, memory=2)
    spec["sweep"] = {"loop.bias": [1.0, 0.8], "seed": [0, 1]}
    return spec


def run(out, spec=None, **kw):
    Runner(build_spec(spec or sweep_spec()), str(out), use_ray=False, stream=quiet(), **kw).run()
    return read_table(out)


@pytest.mark.fp_exact
def test_same_config_and_seed_give_identical_tables(tmp_path):
    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    # exact: same path — the same config and seed on the same machine
    pd.testing.assert_frame_equal(a, b)
    assert set(a.metric) >= {"w2", "precision", "recall", "vendi", "trace_cov", "mean_shift"}
    assert len(a) == 4 * 5 * a.metric.nunique()


def test_different_seeds_differ(tmp_path):
    table = run(tmp_path)
    w2 = table[table.metric == "w2"].pivot_table(index=["bias", "generation"], columns="seed", values="value")
    assert (w2[0] != w2[1]).all()


@pytest.mark.fp_exact
def test_interrupted_run_resumes_to_the_same_table(tmp_path):
    reference = run(tmp_path / "ref")
    spec = build_spec(sweep_spec())
    # interrupt every run between generations: stop after generation 2 (one at 3)
    for i, r in enumerate(spec.runs):
        Loop(r.config, tmp_path / "resumed" / "runs" / r.run_id).run(until=2 + (i == 0))
    resumed = run(tmp_path / "resumed")
    # exact: same path — a resume continues from the stored generations on the same machine
    pd.testing.assert_frame_equal(reference, resumed)


def test_rerun_skips_finished_generations(tmp_path):
    run(tmp_path)
    spec = build_spec(sweep_spec())
    loop = Loop(spec.runs[0].config, tmp_path / "runs" / spec.runs[0].run_id)
    stamp = (loop.store.gen_dir(3) / "DONE").stat().st_mtime_ns
    run(tmp_path)
    assert (loop.store.gen_dir(3) / "DONE").stat().st_mtime_ns == stamp


@pytest.mark.fp_exact
def test_half_written_generation_is_ignored_and_redone(tmp_path):
    reference = run(tmp_path / "ref")
    out = tmp_path / "crash"
    run(out)
    spec = build_spec(sweep_spec())
    store = Loop(spec.runs[0].config, out / "runs" / spec.runs[0].run_id).store
    (store.gen_dir(5) / "DONE").unlink()  # as if killed before publishing DONE
    (store.gen_dir(4) / "DONE").unlink()
    assert store.last_done() == 3
    # exact: same path — unpublished generations are redone with the same operations and seeds
    pd.testing.assert_frame_equal(reference, run(out))


def test_warm_start_loads_previous_generation(tmp_path):
    spec = gaussian_spec(generations=3, warm_start=True, scheme="accumulate")
    table = run(tmp_path, spec)
    assert table.generation.max() == 3 and table.warm_start.all()


def test_failing_run_is_recorded_and_others_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("MADLAB_FAULT", "raise:*:3")
    spec = sweep_spec()
    spec["sweep"] = {"seed": [0, 1]}
    summary = Runner(build_spec(spec), str(tmp_path), use_ray=False, stream=quiet()).run()
    assert len(summary.failed) == 2
    table = read_table(tmp_path)
    failed = table[table.metric == "failed"]
    assert len(failed) == 2 and (failed.generation == 3).all()
    assert failed.error.str.contains("injected failure").all()
    assert table[table.metric == "w2"].generation.max() == 2  # generations before the failure are kept


def test_non_finite_samples_fail_the_run(tmp_path, monkeypatch):
    from madlab_generators.gaussian import GaussianGenerator

    spec = build_spec(gaussian_spec(generations=3))
    monkeypatch.setattr(GaussianGenerator, "fit", lambda self, data, seed: setattr(self, "mean", self.mean * np.nan))
    with pytest.raises(RunFailed, match="non-finite"):
        Loop(spec.runs[0].config, tmp_path / "r").run()
    assert "non-finite" in (tmp_path / "r" / "FAILED").read_text()


def test_generation_1_records_the_real_vs_real_reference(tmp_path):
    """Once per run the loop scores a second real sample against the reference set, the way it
    scores the generator (closed-form W2 between the Gaussian fitted to that sample and the truth)."""
    import json

    from madlab.datasets import get_dataset_class
    from madlab.metrics.lowdim import w2_gaussian

    spec = build_spec(gaussian_spec(generations=2))
    loop = Loop(spec.runs[0].config, tmp_path / "r")
    loop.run()
    first = json.loads((loop.store.gen_dir(1) / "DONE").read_text())
    second = json.loads((loop.store.gen_dir(2) / "DONE").read_text())
    reference = first["metadata"]["real_vs_real"]
    assert "real_vs_real" not in second["metadata"]
    assert set(reference) == set(first["metrics"]) - {"trace_cov", "mean_shift"}  # model metrics have no real analogue
    held = loop.dataset.eval_set(loop.n_eval, seed=loop_seed(loop)).x.astype(np.float64)
    mean, cov = loop.dataset.true_gaussian()
    assert reference["w2"] == pytest.approx(w2_gaussian(held.mean(0), np.cov(held, rowvar=False), mean, cov))
    assert reference["precision"] > 0.8 and reference["recall"] > 0.8


def loop_seed(loop):
    from madlab.loop import derive_seed

    return derive_seed(loop.config.seed, "eval", 1)
