"""Batched sweeps through the runner: the same table as run-by-run, compact records, resume, faults."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from madlab.batched import worker
from madlab.batched.loop import BatchLoop
from madlab.batched.records import BatchStore
from madlab.config import build_spec
from madlab.runner import Runner
from madlab.table import read_table

from conftest import gaussian_spec
from fp import loop_rtol, mp_condition

pytestmark = pytest.mark.fp_exact  # rerun by .ci/run under other BLAS kernels and thread counts

PER_RUN = 10**9  # batch_min_runs that keeps every run in its own folders


def quiet():
    return open("/dev/null", "w")


def sweep_spec(scheme="fully-synthetic", generations=5, seeds=(0, 1, 2), **loop):
    spec = gaussian_spec(scheme=scheme, generations=generations, n_real=30, n_synthetic=30, **loop)
    spec["sweep"] = {"seed": list(seeds), "loop.bias": [1.0, 0.8]}
    return spec


def rounding(generations=5, n=30, d=2) -> float:
    """``fp.loop_rtol`` for ``sweep_spec``'s loops (n = 30 points in d = 2; the longest reduction sums
    2 n d products): the bound between a batched and a per-run table, or two batch compositions."""
    return loop_rtol(generations, 2 * n * d, mp_condition(n, d))


def run(out, spec, batch_min_runs=1, **kw):
    summary = Runner(build_spec(spec), str(out), use_ray=False, stream=quiet(), batch_min_runs=batch_min_runs,
                     **kw).run()
    return summary, read_table(out)


@pytest.mark.parametrize("scheme,loop", [("fully-synthetic", {}), ("fresh-real", {"n_initial": 40, "memory": 2}),
                                         ("accumulate-subsample", {"train_size": 25}), ("accumulate", {})])
def test_batched_sweep_gives_the_per_run_table(tmp_path, scheme, loop):
    spec = sweep_spec(scheme, **loop)
    _, reference = run(tmp_path / "per-run", spec, PER_RUN)
    _, table = run(tmp_path / "batched", spec)
    # stacked vs single BLAS calls: equal to rounding (values O(1), so atol = rtol)
    pd.testing.assert_frame_equal(reference, table, check_exact=False, rtol=rounding(), atol=rounding())
    assert not list((tmp_path / "batched").glob("runs/*/gen-*")), "batched runs write no per-generation folders"
    records = list((tmp_path / "batched").glob("batches/*/gen-*.npz"))
    assert len(records) == 5  # one record per generation for the whole batch of 6 runs


def test_interrupted_batched_sweep_resumes_to_the_same_table(tmp_path, monkeypatch):
    spec = sweep_spec(generations=6)
    _, reference = run(tmp_path / "ref", spec)
    step = BatchLoop.step

    def interrupted(self, t, slots=None):
        if t == 4:
            raise KeyboardInterrupt
        return step(self, t, slots)

    monkeypatch.setattr(BatchLoop, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "out", spec)
    monkeypatch.setattr(BatchLoop, "step", step)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("batches/*/gen-*.npz")}
    assert len(before) == 3 and not (tmp_path / "out" / "metrics.parquet").exists()
    summary, table = run(tmp_path / "out", spec)
    assert not summary.failed
    # exact: same path — the same batch of six continues from its stored state (float64, bit for bit)
    pd.testing.assert_frame_equal(reference, table)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in before.items()), "published generations are kept"


@pytest.mark.parametrize("scheme,loop", [("accumulate-subsample", {"train_size": 25}), ("accumulate", {}),
                                         ("fresh-real", {"n_initial": 40, "memory": 2})])
def test_killed_between_record_and_state_redoes_one_generation(tmp_path, monkeypatch, scheme, loop):
    spec = sweep_spec(scheme, generations=6, **loop)
    _, reference = run(tmp_path / "ref", spec)
    monkeypatch.setattr(worker, "STATE_EVERY_SECONDS", 0.0)  # the state follows every generation's records
    write_state = BatchStore.write_state

    def dies(self, batch):
        if batch.done.max() == 4:
            raise KeyboardInterrupt  # generation 4's record is published, the state still says 3
        write_state(self, batch)

    monkeypatch.setattr(BatchStore, "write_state", dies)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "out", spec)
    monkeypatch.setattr(BatchStore, "write_state", write_state)
    _, table = run(tmp_path / "out", spec)
    pd.testing.assert_frame_equal(reference, table)  # exact: same path — same batch, redone from its stored state


@pytest.mark.parametrize("scheme,loop", [("accumulate-subsample", {"train_size": 25}), ("accumulate", {}),
                                         ("fully-synthetic", {})])
def test_killed_long_after_the_last_state_redoes_from_it(tmp_path, monkeypatch, scheme, loop):
    """The state is checkpointed every STATE_EVERY_SECONDS, not every generation: a worker killed
    (nothing more written, not even in an exception handler) several generations after its last
    checkpoint redoes them from it, rewriting the same records, to the uninterrupted table."""
    spec = sweep_spec(scheme, generations=6, **loop)
    _, reference = run(tmp_path / "ref", spec)
    write_generation, write_state = BatchStore.write_generation, BatchStore.write_state
    killed, states = [], []

    def record(self, result, metadata, keep):
        if result.generation == 5:
            killed.append(True)
            raise KeyboardInterrupt
        write_generation(self, result, metadata, keep)

    def state(self, batch):
        if killed:
            raise KeyboardInterrupt  # a killed process writes nothing
        states.append(int(batch.done.max()))
        write_state(self, batch)

    clock = iter(range(0, 10_000, 4))  # the worker's clock moves 4 s per reading: a checkpoint every third generation
    monkeypatch.setattr(worker, "_clock", lambda: float(next(clock)))
    monkeypatch.setattr(BatchStore, "write_generation", record)
    monkeypatch.setattr(BatchStore, "write_state", state)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "out", spec)
    assert states and max(states) < 4  # generations after the last checkpoint were published without one
    monkeypatch.undo()
    _, table = run(tmp_path / "out", spec)
    pd.testing.assert_frame_equal(reference, table)  # exact: same path — same batch, redone from its stored state


def test_run_that_raises_fails_alone_and_a_rerun_retries_it(tmp_path, monkeypatch):
    spec = sweep_spec(generations=4)
    monkeypatch.setenv("MADLAB_FAULT", "raise:seed=1,bias=0.8-*:2")
    summary, table = run(tmp_path, spec)
    assert [o.run_id.startswith("seed=1,bias=0.8-") for o in summary.failed] == [True]
    failed = table[table.metric == "failed"]
    assert failed.generation.tolist() == [2] and "injected failure at generation 2" in failed.error.iloc[0]
    assert table[(table.seed == 1) & (table.bias == 0.8) & (table.metric == "w2")].generation.tolist() == [1]
    assert sorted(table[table.metric == "w2"].groupby("run_id").generation.max().tolist()) == [1, 4, 4, 4, 4, 4]
    monkeypatch.delenv("MADLAB_FAULT")
    summary, table = run(tmp_path, spec)
    _, reference = run(tmp_path / "ref", spec)
    assert not summary.failed
    # the retried run resumes in a batch of its own (the reference ran it in a batch of six): another
    # batch shape, so rounding only
    pd.testing.assert_frame_equal(reference, table, check_exact=False, rtol=rounding(4), atol=rounding(4))


def test_non_finite_samples_fail_only_that_run(tmp_path, monkeypatch):
    spec = sweep_spec(generations=4)
    from madlab_generators.gaussian_batch import BatchedGaussian

    sample = BatchedGaussian.sample

    def poisoned(self, n, slots, bias, seeds):
        out = sample(self, n, slots, bias, seeds)
        out[np.asarray(slots) == 2] = np.inf
        return out

    monkeypatch.setattr(BatchedGaussian, "sample", poisoned)
    summary, table = run(tmp_path, spec)
    assert len(summary.failed) == 1 and "non-finite" in summary.failed[0].error
    assert (table[table.metric == "failed"].generation == 1).all()
    assert table[table.status == "ok"].groupby("run_id").generation.max().tolist() == [4] * 5


def test_small_groups_keep_per_run_folders(tmp_path):
    spec = sweep_spec(generations=2)
    run(tmp_path, spec, batch_min_runs=7)  # six runs: fewer than the threshold
    assert len(list(Path(tmp_path).glob("runs/*/gen-0002/DONE"))) == 6 and not (tmp_path / "batches").exists()


def test_report_reads_a_batched_folder(tmp_path):
    from madlab.report import make_report

    spec = sweep_spec(generations=3)
    run(tmp_path, spec)
    written = make_report(str(tmp_path))
    assert any(p.endswith("index.html") for p in written)


@pytest.mark.ray
def test_batch_whose_worker_is_killed_gives_the_uninterrupted_table(tmp_path, monkeypatch, ray_session):
    spec = sweep_spec(generations=5, seeds=(0, 1))
    _, reference = run(tmp_path / "ref", spec)
    monkeypatch.setenv("MADLAB_FAULT", "kill:seed=1,bias=0.8-*:3")  # the batch's worker dies before generation 3
    summary = Runner(build_spec(spec), str(tmp_path / "killed"), stream=quiet(), batch_min_runs=1).run()
    assert not summary.failed
    assert len(list((tmp_path / "killed" / "runs").glob("*/.fault-kill-3"))) == 1  # it really died, once
    # exact: same path — the same batch, retried from its stored state; a Ray worker runs the same
    # operations with the same thread count (compute_threads) as the in-process reference
    pd.testing.assert_frame_equal(reference, read_table(tmp_path / "killed"))


@pytest.mark.ray
@pytest.mark.slow
def test_run_that_always_kills_its_worker_fails_alone_in_its_batch(tmp_path, monkeypatch, ray_session):
    spec = sweep_spec(generations=3, seeds=(0, 1))
    _, reference = run(tmp_path / "ref", spec)
    monkeypatch.setenv("MADLAB_FAULT", "crash:seed=1,bias=1.0-*:2")
    monkeypatch.setenv("MADLAB_MAX_RESTARTS", "1")
    summary = Runner(build_spec(spec), str(tmp_path / "out"), stream=quiet(), batch_min_runs=1, workers=1).run()
    table = read_table(tmp_path / "out")
    assert [o.run_id.split("-")[0] for o in summary.failed] == ["seed=1,bias=1.0"]
    assert "worker died repeatedly" in summary.failed[0].error
    poisoned = (table.seed == 1) & (table.bias == 1.0)
    same = [c for c in reference.columns if c not in ("status", "error")]
    # the surviving runs go on in a batch without the poisoned one: another batch shape, rounding only
    pd.testing.assert_frame_equal(reference[~((reference.seed == 1) & (reference.bias == 1.0))][same].reset_index(drop=True),
                                  table[~poisoned][same].reset_index(drop=True),
                                  check_exact=False, rtol=rounding(3), atol=rounding(3))
    assert table[poisoned & (table.metric == "failed")].generation.tolist() == [2]


def test_report_finds_a_batched_runs_samples(tmp_path):
    from madlab.report import open_results

    run(tmp_path, sweep_spec(generations=3))
    results = open_results(tmp_path)
    run_id = results.table.run_id.iloc[0]
    assert results.generations(run_id) == [1, 2, 3]
    assert results.samples(run_id, 2).x.shape == (30, 2)


def test_batched_runs_keep_the_same_real_vs_real_reference_as_per_run_folders(tmp_path):
    from madlab.report import open_results
    from madlab.report.summary import reference_values

    spec = sweep_spec(generations=2)
    run(tmp_path / "per-run", spec, PER_RUN)
    run(tmp_path / "batched", spec)
    per_run, batched = (reference_values(open_results(tmp_path / name)).sort_values(["run_id", "metric"])
                        .reset_index(drop=True) for name in ("per-run", "batched"))
    assert len(per_run) >= 6 and set(per_run.metric) >= {"w2", "precision"}
    # generation 1's real-vs-real scores, per-run vs stacked metric code: rounding only
    pd.testing.assert_frame_equal(per_run, batched, check_exact=False, rtol=rounding(1), atol=rounding(1))
