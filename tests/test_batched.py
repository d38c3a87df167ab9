"""The batched engine computes each run's numbers as the per-run Loop does, up to rounding.

Every scheme, the Gaussian (vectorised) and GMM (per-run fallback) generators: each slot of a
batch equals the per-run Loop's DONE records within the rounding bound of ``fp.loop_rtol`` (the
stacked and the single matrix products are different BLAS calls, whose last bits depend on the
CPU's kernel), and a run's numbers do not depend on the batch it is in or its size beyond that
bound. Integers (provenance, counts) and strings are compared exactly.
"""
import numpy as np
import pytest

from madlab.engine.batched.loop import BatchLoop, batch_key
from madlab.specs import build_spec
from madlab.engine.loop import Loop

from conftest import gaussian_spec
from fp import assert_close, gamma, loop_rtol, mp_condition

pytestmark = pytest.mark.fp_exact  # rerun by .ci/run under other BLAS kernels and thread counts

SCHEMES = {
    "fully-synthetic": {},
    "fixed-real": {},
    "fixed-real-accumulate": {"scheme": "fixed-real", "accumulate_synthetic": True},
    "fresh-real": {"n_initial": 50, "memory": 2},
    "accumulate": {},
    "accumulate-subsample": {"train_size": 30},
}


def configs(scheme: str, seeds=(0, 1, 2), biases=(1.0, 0.8), dim=3, generations=5, **extra):
    loop = {"n_real": 30, "n_synthetic": 30, "scheme": scheme, **SCHEMES[scheme], **extra.pop("loop", {})}
    spec = gaussian_spec(generations=generations, **loop)
    spec["dataset"]["dim"] = dim
    spec.update(extra)
    spec["sweep"] = {"seed": list(seeds), "loop.bias": list(biases)}
    return [run.config for run in build_spec(spec).runs]


def batched_records(runs, generations=None) -> list[list[dict]]:
    batch = BatchLoop(runs)
    out = [[] for _ in runs]

    def collect(result):
        for j, slot in enumerate(result.slots):
            out[slot].append(result.record(j, batch.evaluator.metadata))

    batch.run(generations, on_generation=collect)
    return out


def loop_records(config, tmp_path) -> list[dict]:
    loop = Loop(config, tmp_path / config.run_hash())
    loop.run()
    return [loop.store.record(t) for t in range(1, config.loop.generations + 1)]


def tolerance(run) -> float:
    """``fp.loop_rtol`` for this run's loop: the longest reduction sums n x d products (a covariance entry
    or a squared distance), the fit's condition number is the Marchenko-Pastur bound for n points in d."""
    n, d = min(run.loop.n_real, run.loop.n_synthetic), run.dataset.get("dim", 2)  # gmm25 is 2-D
    return loop_rtol(run.loop.generations, 2 * n * d, mp_condition(n, d))


def assert_same(batched: dict, reference: dict, rtol: float):
    """Numbers within ``rtol`` (and ``atol = rtol``: the data are O(1), unit-variance Gaussians, so
    a value's absolute rounding error is at most rtol times 1), integers and strings exactly."""
    assert batched["provenance"] == reference["provenance"]  # integer counts and generation numbers
    assert_close(batched["metadata"], reference["metadata"], rtol, rtol, f"generation {batched['generation']} metadata")
    assert_close(batched["metrics"], reference["metrics"], rtol, rtol, f"generation {batched['generation']} metrics")


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_gaussian_batch_equals_per_run_loop(scheme, tmp_path):
    runs = configs(scheme)
    for run, records in zip(runs, batched_records(runs)):
        reference = loop_records(run, tmp_path)
        assert len(records) == len(reference)
        for mine, theirs in zip(records, reference):
            assert_same(mine, theirs, tolerance(run))


@pytest.mark.parametrize("scheme", ["fully-synthetic", "accumulate-subsample", "accumulate"])
def test_gmm_fallback_batch_equals_per_run_loop(scheme, tmp_path):
    spec = {"dataset": {"name": "gmm25"}, "generator": {"name": "gmm", "n_components": 3, "max_iter": 20}}
    runs = configs(scheme, seeds=(0, 1), biases=(1.0,), generations=3, **spec)
    for run, records in zip(runs, batched_records(runs)):
        for mine, theirs in zip(records, loop_records(run, tmp_path)):
            # the fallback runs the generator's own fit per slot, but its metrics still go through the
            # batched (stacked) metric code: rounding only
            assert_same(mine, theirs, tolerance(run))


@pytest.mark.parametrize("scheme", ["accumulate-subsample", "accumulate", "fresh-real"])
def test_results_do_not_depend_on_batch_composition_or_size(scheme):
    runs = configs(scheme, seeds=(0, 1, 2, 3, 4), biases=(1.0, 0.9))
    rtol = tolerance(runs[0])  # another batch shape may take another BLAS blocking: rounding only
    whole = batched_records(runs)
    order = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]
    shuffled = batched_records([runs[i] for i in order])
    for position, i in enumerate(order):
        assert_close(shuffled[position], whole[i], rtol, rtol, f"run {i} shuffled")
    for i, run in enumerate(runs[:3]):
        assert_close(batched_records([run])[0], whole[i], rtol, rtol, f"run {i} alone")
    pairs = batched_records(runs[4:6])
    assert_close(pairs, whole[4:6], rtol, rtol, "runs 4-5 as a pair")


def test_pooled_statistics_equal_the_direct_fit():
    from madlab_generators.gaussian_batch import GaussianStatistics, _scatter

    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((4, n, 5)) * rng.uniform(0.1, 10) + rng.uniform(-50, 50) for n in (30, 7, 30, 2, 100)]
    pooled = GaussianStatistics.of(parts[0])
    for part in parts[1:]:
        pooled = pooled.combine(GaussianStatistics.of(part))
    everything = np.concatenate(parts, axis=1)
    m = everything.shape[1]
    for i in range(4):
        x = everything[i]
        direct_cov = np.cov(x, rowvar=False, ddof=1)
        # Two summation orders of m terms differ by <= 2 gamma(m) sum|terms| (fp.py); the pooled
        # combination adds one correction term per part (5 parts), so 4 gamma(m) covers both sides.
        np.testing.assert_array_less(np.abs(pooled.mean[i] - x.mean(0)), 4 * gamma(m) * np.abs(x).mean(0))
        spread = np.abs(x) + np.abs(x.mean(0))  # |x - mean| <= |x| + |mean|: the size of a scatter term
        cov_atol = 4 * gamma(m) * (spread.T @ spread) / (m - 1)
        np.testing.assert_array_less(np.abs(pooled.scatter[i] / (pooled.count[i] - 1) - direct_cov), cov_atol)
    assert pooled.count.tolist() == [everything.shape[1]] * 4
    assert _scatter(everything - everything.mean(1, keepdims=True)).shape == (4, 5, 5)


def test_a_run_that_fails_is_frozen_and_the_others_go_on(monkeypatch):
    runs = configs("fully-synthetic", seeds=(0, 1), biases=(1.0,))
    batch = BatchLoop(runs)
    sample = type(batch.model).sample

    def poisoned(self, n, slots, bias, seeds):
        out = sample(self, n, slots, bias, seeds)
        if batch.done.max() == 2:  # generation 3 of slot 1 goes non-finite
            out[list(slots).index(1)] = np.nan if 1 in slots else out[0]
        return out

    monkeypatch.setattr(type(batch.model), "sample", poisoned)
    failures = {}
    batch.run(on_generation=lambda r: failures.update(r.failures))
    assert list(failures) == [1] and "generation 3" in failures[1]
    assert batch.done.tolist() == [5, 2] and batch.failed.tolist() == [False, True]


def test_batch_key_separates_what_must_not_share_a_batch():
    a, b = configs("fully-synthetic", seeds=(0,), biases=(1.0, 0.5))
    assert batch_key(a) == batch_key(b)  # seed and bias vary within a batch
    (c,) = configs("fully-synthetic", seeds=(0,), biases=(1.0,), dim=4)
    assert batch_key(c) != batch_key(a)


@pytest.mark.parametrize("dim", [1, 10, 33])
def test_gaussian_batch_equals_per_run_loop_across_dimensions(dim, tmp_path):
    runs = configs("accumulate-subsample", seeds=(0, 1), biases=(0.9,), dim=dim, generations=3,
                   loop={"n_real": 40, "n_synthetic": 40})
    for run, records in zip(runs, batched_records(runs)):
        for mine, theirs in zip(records, loop_records(run, tmp_path)):
            assert_same(mine, theirs, tolerance(run))


def test_vectorised_seeds_equal_derive_seed():
    from madlab.engine.batched.seeds import derive_seeds
    from madlab.engine.loop import derive_seed

    seeds = np.concatenate([np.arange(40), np.random.default_rng(0).integers(0, 2**32, 200), [2**32 - 1]])
    for purpose in ("data", "eval", "fit", "sample", "subsample"):
        for generation in (0, 1, 7, 100, 2**32 - 1):
            assert derive_seeds(seeds, purpose, generation) == [derive_seed(int(s), purpose, generation) for s in seeds]
    assert derive_seeds([2**40, 3], "fit", 2) == [derive_seed(2**40, "fit", 2), derive_seed(3, "fit", 2)]


@pytest.mark.parametrize("generator,extra", [
    ("gaussian", {"metrics": {"k": 5, "n_eval": 45}, "loop": {"warm_start": True}}),
    ("gaussian", {"metrics": {"k": 3, "names": ["w2", "coverage", "trace_cov"]}}),
    ("gmm", {"loop": {"warm_start": True}, "generator": {"name": "gmm", "n_components": 2, "max_iter": 10}}),
    ("gaussian", {"generator": {"name": "gaussian", "fit": "mle"}}),
])
def test_batch_equals_per_run_loop_with_eval_size_metric_names_and_warm_start(generator, extra, tmp_path):
    runs = configs("fresh-real", seeds=(0, 1), biases=(1.0,), generations=3, **extra)
    for run, records in zip(runs, batched_records(runs)):
        for mine, theirs in zip(records, loop_records(run, tmp_path)):
            assert_same(mine, theirs, tolerance(run))


def test_pooled_mle_fit_equals_per_run_loop(tmp_path):
    """fit: mle (divisor n) through the pooled sufficient statistics of fixed-real accumulation."""
    runs = configs("fixed-real-accumulate", seeds=(0, 1), biases=(1.0,), generator={"name": "gaussian", "fit": "mle"})
    for run, records in zip(runs, batched_records(runs)):
        for mine, theirs in zip(records, loop_records(run, tmp_path)):
            assert_same(mine, theirs, tolerance(run))


def test_runs_with_a_loop_option_the_engine_lacks_are_not_batched():
    (plain,) = configs("fully-synthetic", seeds=(0,), biases=(1.0,))
    curated = plain.model_copy(update={"loop": plain.loop.model_copy(update={"curation": {"name": "x"}})})
    assert batch_key(plain) is not None and batch_key(curated) is None
    (truncated,) = configs("fixed-real", seeds=(0,), biases=(1.0,), loop={"accumulate_synthetic": "truncated"})
    assert batch_key(truncated) is None  # the engine pools whole synthetic sets only
