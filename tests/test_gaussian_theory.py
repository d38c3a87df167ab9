"""MAD §3.1: the fully-synthetic Gaussian loop with unbiased fits.

With n samples per generation, E[Σ_t | Σ_{t-1}] = λ Σ_{t-1}, so over many seeds the mean of
trace_cov_t / trace_cov_real follows λ^(t-1) (generation 1 is fitted on real data, so t-1 biased
sampling steps precede the fit of generation t), while for λ = 1 the median still decays:
the loop collapses in probability although it is unbiased in expectation. Tolerances are
five standard errors of the Monte-Carlo mean, estimated from the same sample.
"""
from functools import lru_cache

import numpy as np
import pytest

from madlab_generators.gaussian import GaussianGenerator
from madlab.specs import build_spec
from madlab.datasets.lowdim import GaussianDataset
from madlab.engine.loop import derive_seed
from madlab.runner import Runner
from madlab.store.table import read_table

from conftest import gaussian_spec

D, N, T, SEEDS = 2, 20, 12, 2000


@lru_cache(maxsize=None)
def traces(bias: float) -> np.ndarray:
    """(SEEDS, T) trace of the fitted covariance, generation 1..T, through the plugin's fit/sample."""
    data = GaussianDataset(GaussianDataset.Params(dim=D))
    out = np.empty((SEEDS, T))
    for s in range(SEEDS):
        gen = GaussianGenerator(GaussianGenerator.Params(), data_shape=(D,))
        train = data.draw(N, seed=s)
        for t in range(T):
            gen.fit(train, seed=0)
            out[s, t] = np.trace(gen.cov)
            train = gen.sample(N, bias=bias, seed=derive_seed(s, "sample", t + 1))
    return out / D


@pytest.mark.parametrize("bias", [1.0, 0.8])
def test_mean_trace_tracks_lambda_power(bias):
    ratio = traces(bias)
    mean = ratio.mean(0)
    stderr = ratio.std(0, ddof=1) / np.sqrt(SEEDS)
    expected = bias ** np.arange(T)
    assert np.all(np.abs(mean - expected) < 5 * stderr), (mean, expected, stderr)


def test_unbiased_loop_still_collapses_in_probability():
    ratio = traces(1.0)[:, -1]
    # median below the mean (=1): more than half of the seeds lost variance; binomial 5-sigma bound
    below = (ratio < 1.0).mean()
    assert below > 0.5 + 5 * np.sqrt(0.25 / SEEDS)
    # and the median keeps falling with the generations
    medians = np.median(traces(1.0), axis=0)
    assert medians[-1] < medians[T // 2] < medians[0]


def test_engine_applies_bias_between_generations(tmp_path):
    """Same law through the whole engine (sweep of seeds, tidy table)."""
    seeds, bias = 300, 0.7
    spec = gaussian_spec(generations=4, n_real=N, n_synthetic=N, bias=bias)
    spec["sweep"] = {"seed": list(range(seeds))}
    Runner(build_spec(spec), str(tmp_path), use_ray=False, stream=open("/dev/null", "w")).run()
    table = read_table(tmp_path)
    ratio = table[table.metric == "trace_cov"].pivot(index="seed", columns="generation", values="value").to_numpy() / D
    mean, stderr = ratio.mean(0), ratio.std(0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(mean - bias ** np.arange(4)) < 5 * stderr)
    assert ratio[:, 3].mean() < 0.5  # 0.7^3 = 0.343: clearly shrinking, not noise


def test_mle_fit_is_sklearn_s_single_component_gaussian_mixture():
    """fit: mle is what Gillman et al.'s toy fits (sklearn GaussianMixture, one component): the sample
    mean and the 1/n covariance (sklearn's reg_covar set to 0 here; the toy's 1e-6 is not added)."""
    from sklearn.mixture import GaussianMixture

    from fp import gamma
    from madlab.core.samples import Samples

    x = np.random.default_rng(5).standard_normal((50, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]]) + [0.4, -1.0]
    gen = GaussianGenerator(GaussianGenerator.Params(fit="mle"), data_shape=(2,))
    gen.fit(Samples(x), seed=0)
    gm = GaussianMixture(n_components=1, reg_covar=0.0, random_state=1).fit(x)
    # two summation orders of 50 terms differ by <= 2 gamma(50) sum|terms| (tests/fp.py); sklearn adds
    # 10 eps to the component weight (relative 10 eps / 50) and runs EM steps that reproduce the same
    # moments; 4 gamma(50) per entry covers both
    spread = np.abs(x) + np.abs(x.mean(0))
    np.testing.assert_array_less(np.abs(gen.mean - gm.means_[0]), 4 * gamma(50) * np.abs(x).mean(0))
    np.testing.assert_array_less(np.abs(gen.cov - gm.covariances_[0]), 4 * gamma(50) * (spread.T @ spread) / 50)
    unbiased = GaussianGenerator(GaussianGenerator.Params(), data_shape=(2,))
    unbiased.fit(Samples(x), seed=0)
    np.testing.assert_allclose(unbiased.cov * 49 / 50, gen.cov, rtol=4 * gamma(50))
    assert GaussianGenerator.Params().model_dump() == {}  # the default stays out of run ids made before it
