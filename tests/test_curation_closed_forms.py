"""Curators against closed forms, with tolerances from the sampling distribution (4 standard errors).

Each check compares a curator's output with a quantity computed independently of it: a plain-numpy
Monte Carlo of the Luce choice, the exponentially tilted Gaussian, the chi-square quantile of a
Gaussian's log-density, binomial error counts, the identity and the k-means fixed point.
"""
from __future__ import annotations

import numpy as np
import pytest

from madlab.testing import make_dataset
from madlab.curation.params import make_curator_params
from madlab.core.samples import Samples

Z = 4.0  # standard errors: a false failure about once in 16,000 runs per comparison

MU = np.array([0.5, -1.0])
SIGMA = np.array([[1.0, 0.6], [0.6, 2.0]])
W = np.array([1.0, -0.5])


def curator(section: dict, dataset: dict | None = None):
    dataset = make_dataset(dataset or {"name": "gaussian", "dim": 2})
    cls, params = make_curator_params(section)
    return cls(params, dataset=dataset), dataset


def gaussian(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(MU, SIGMA, size=n)


def best_of_k(k: int, beta: float, n_keep: int, seed: int) -> np.ndarray:
    cur, _ = curator({"name": "best-of-k", "k": k, "beta": beta, "max_oversampling": k,
                      "reward": {"name": "linear", "w": W.tolist()}})
    out = cur.curate(Samples(gaussian(k * n_keep, seed)), n_keep, real=Samples(gaussian(10, 0)), seed=seed + 1)
    return out.samples.x


def luce_mean_reference(k: int, beta: float, groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """E[Σ_i softmax(β w·x)_i x_i] over groups of K Gaussian draws: Monte Carlo (mean, standard error)."""
    x = np.random.default_rng(seed).multivariate_normal(MU, SIGMA, size=(groups, k))
    logits = beta * x @ W
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    per_group = (p[..., None] * x).sum(1)
    return per_group.mean(0), per_group.std(0, ddof=1) / np.sqrt(groups)


def test_luce_choice_among_k_candidates_has_the_expected_kept_mean():
    k, beta, n = 4, 0.8, 20_000
    kept = best_of_k(k, beta, n, seed=11)
    ref, ref_se = luce_mean_reference(k, beta, 200_000, seed=99)
    se = np.sqrt(kept.var(0, ddof=1) / n + ref_se**2)
    assert np.all(np.abs(kept.mean(0) - ref) < Z * se), (kept.mean(0), ref, se)
    # and it differs from both the untilted mean and the K -> inf limit by far more than that
    assert np.all(np.abs(ref - MU) > 10 * se)


def test_luce_choice_approaches_the_tilted_gaussian_as_k_grows():
    beta = 0.5
    tilted = MU + beta * SIGMA @ W  # p(x) e^{β w·x} / Z = N(μ + βΣw, Σ)
    gaps = []
    for k in (1, 4, 32, 256):
        kept = best_of_k(k, beta, 4000, seed=k)
        gaps.append(np.linalg.norm(kept.mean(0) - tilted))
    se = np.sqrt(np.trace(SIGMA) / 4000)
    assert gaps[0] > gaps[1] > gaps[3]
    kept = best_of_k(256, beta, 4000, seed=5)
    # the self-normalised bias at K = 256 is O(β²|Σw|²/K) ≈ 0.003, well inside 4 standard errors
    diff = kept.mean(0) - tilted
    assert np.all(np.abs(diff) < Z * np.sqrt(np.diag(SIGMA) / 4000)), diff
    cov = np.cov(kept.T)
    cov_se = np.sqrt((SIGMA**2 + np.outer(np.diag(SIGMA), np.diag(SIGMA))) / 4000)  # Wishart
    assert np.all(np.abs(cov - SIGMA) < Z * cov_se + 0.01), (cov, SIGMA)
    assert gaps[0] > 10 * se


@pytest.mark.fp_exact
def test_best_of_k_with_infinite_beta_keeps_each_groups_best():
    x = gaussian(3 * 500, 3)
    cur, _ = curator({"name": "best-of-k", "k": 3, "beta": float("inf"), "reward": {"name": "linear", "w": W.tolist()}})
    out = cur.curate(Samples(x), 500, real=Samples(x[:5]), seed=0)
    # exact: a selection copies candidate rows; the argmax agrees unless two rewards tie within rounding (continuous data)
    np.testing.assert_array_equal(out.samples.x, x.reshape(500, 3, 2)[np.arange(500), (x @ W).reshape(500, 3).argmax(1)])
    assert out.reward_after == pytest.approx((x @ W).reshape(500, 3).max(1).mean())


def test_self_correct_gamma_zero_is_the_identity_and_one_returns_the_centres():
    ds = {"name": "gmm25"}
    real = make_dataset(ds).draw(2000, seed=1)
    cand = Samples(make_dataset(ds).draw(500, seed=2).x * 1.1)  # unlabelled synthetic samples
    outs = {}
    for gamma in (0.0, 0.5, 1.0):
        cur, _ = curator({"name": "self-correct", "gamma": gamma, "clusters": 25}, ds)
        outs[gamma] = cur.curate(cand, 500, real=real, seed=3).samples.x
    # exact: γ = 0 returns the candidates themselves ((1 - 0) x + 0 c = x in IEEE arithmetic)
    np.testing.assert_array_equal(outs[0.0], cand.x)
    centres = np.unique(outs[1.0], axis=0)
    assert len(centres) <= 25
    # every returned point is a k-means centre: the mean of the real points in its Voronoi cell
    nearest = ((real.x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    for j, c in enumerate(centres):
        np.testing.assert_allclose(real.x[nearest == j].mean(0), c, atol=1e-6)
    # each candidate went to its nearest centre, and γ interpolates linearly
    # exact: γ = 1 returns the centres themselves; the nearest centre agrees unless two distances tie within rounding
    np.testing.assert_array_equal(centres[((cand.x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)], outs[1.0])
    np.testing.assert_allclose(outs[0.5], 0.5 * cand.x + 0.5 * outs[1.0], atol=1e-12)


def test_self_correct_assignment_at_gamma_one_returns_distinct_real_samples_at_minimum_cost():
    real = Samples(gaussian(300, 1))
    cand = Samples(gaussian(200, 2) * 0.5)
    cur, _ = curator({"name": "self-correct", "gamma": 1.0, "method": "assignment"})
    out = cur.curate(cand, 200, real=real, seed=0).samples.x
    rows = [np.flatnonzero((real.x == row).all(1)) for row in out]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 200
    cost = ((out - cand.x) ** 2).sum()
    rng = np.random.default_rng(0)  # no random one-to-one matching is cheaper
    for _ in range(20):
        other = real.x[rng.permutation(300)[:200]]
        assert cost <= ((other - cand.x) ** 2).sum()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gillman_toy_moves_each_sample_t_of_the_way_to_its_optimally_assigned_fresh_draw(gamma):
    """method gillman-toy against brute force: over all 7! one-to-one pairings of 7 samples with 7 fresh
    draws of N(0, I) (the dataset's rows under the curation seed), the minimum total Euclidean distance
    one, each sample moved t = γ/(1 + γ) of the way; the real training rows play no part."""
    import itertools

    n, seed = 7, 11
    cand = Samples(gaussian(n, 3) * 0.3)
    cur, ds = curator({"name": "self-correct", "gamma": gamma, "method": "gillman-toy"})
    out = cur.curate(cand, n, real=Samples(gaussian(5, 4)), seed=seed).samples.x
    fresh = ds.draw(n, seed=seed).x
    dist = np.sqrt(((cand.x[:, None] - fresh[None]) ** 2).sum(-1))
    best = min(itertools.permutations(range(n)), key=lambda p: dist[np.arange(n), list(p)].sum())
    t = gamma / (1 + gamma)
    # exact: both sides compute (1 - t) x + t c from the same float64 rows (random costs do not tie)
    np.testing.assert_array_equal(out, (1 - t) * cand.x + t * fresh[list(best)])
    other = cur.curate(cand, n, real=Samples(gaussian(5, 99)), seed=seed).samples.x
    np.testing.assert_array_equal(out, other)  # exact: same path; real is not read


def test_gillman_toy_draws_fresh_targets_each_seed_and_its_strength_is_gamma_over_one_plus_gamma():
    """The targets are new draws for every curation seed (a generation), not the training rows; at
    γ = 1 the samples move half way (t = 1/2), so 2·out − x are the assigned draws, which for a
    zero sample set are a permutation of the draws themselves."""
    cur, ds = curator({"name": "self-correct", "gamma": 1.0, "method": "gillman-toy"})
    zeros = Samples(np.zeros((50, 2)))
    for seed in (1, 2):
        out = cur.curate(zeros, 50, real=Samples(gaussian(50, 0)), seed=seed).samples.x
        # exact: 0.5 * c is a power-of-two scaling of c, and (1 - 0.5) * 0 adds zero
        np.testing.assert_array_equal(np.sort(2 * out, axis=0), np.sort(ds.draw(50, seed=seed).x, axis=0))
    assert cur.strength == 0.5


def gillman_rejection_reference(x: np.ndarray, t: float, ds, seed: int, n: int) -> np.ndarray:
    """The authors' PointwiseCorrection.rejection_sampling (commit 756c50c) one candidate at a time: scipy's
    scalar pdf, np.histogram2d, int() bin indices; fed the curator's documented proposal and uniform streams."""
    import math

    from scipy.stats import multivariate_normal as mvn

    emp, xe, ye = np.histogram2d(x[:, 0], x[:, 1], bins=10, density=True)
    peak = mvn.pdf([0, 0], [0, 0], np.eye(2))
    bound = ((1 - t) * np.max(emp) + t * peak) / peak
    rng, out, offset = np.random.default_rng(seed), [], 0
    while len(out) < n:
        size = max(2, math.ceil(2 * bound * n))
        candidates, us = ds.draw(size, seed=seed, offset=offset).x, rng.uniform(size=size)
        offset += size
        for c, u in zip(candidates, us):
            i_x, i_y = int((c[0] - xe[0]) / (xe[1] - xe[0])), int((c[1] - ye[0]) / (ye[1] - ye[0]))
            value = 0.0 if (i_x >= 10 or i_y >= 10 or i_x < 0 or i_y < 0) else emp[i_x][i_y]
            density = mvn.pdf(c, [0, 0], np.eye(2))
            if ((1 - t) * value + t * density) / (bound * density) > u:
                out.append(c)
    return np.array(out[:n])


@pytest.mark.parametrize("gamma", [0.0, 0.3, 5.0])
def test_gillman_toy_rejection_is_the_authors_sampler(gamma):
    """method gillman-toy-rejection against a candidate-by-candidate port of the authors' current sampler.
    Both accept a proposal when ratio > u; the two compute the ratio with different rounding (vectorised vs
    scalar pdf, a few ulps), so a decision can differ only if u falls within a few ulps of the ratio:
    about 1e-15 per candidate, over the few hundred here. The kept rows are the proposals themselves."""
    n, seed = 25, 17
    x = gaussian(n, 5) * 0.4
    cur, ds = curator({"name": "self-correct", "gamma": gamma, "method": "gillman-toy-rejection"})
    out = cur.curate(Samples(x), n, real=Samples(x[:3]), seed=seed).samples.x
    # exact: the same dataset rows, selected by the same decisions (see above)
    np.testing.assert_array_equal(out, gillman_rejection_reference(x, gamma / (1 + gamma), ds, seed, n))
    if gamma == 0.0:  # t = 0: only where the samples' histogram is non-zero, within one bin of its range
        _, edges = np.histogramdd(x, bins=10)
        width = np.array([e[1] - e[0] for e in edges])
        assert ((out > np.array([e[0] for e in edges]) - width) & (out <= np.array([e[-1] for e in edges]))).all()


def test_verifier_density_threshold_is_the_chi_square_quantile():
    q = 0.3
    cur, _ = curator({"name": "verify", "quantile": q, "reference_size": 20_000})
    # in 2-D, log p = -u - log 2π with u = |x|²/2 ~ Exp(1): the q-quantile is log q - log 2π, and the
    # sample quantile's standard error is sqrt(q(1-q)/n) / q (the density of u at -log q is q)
    exact = np.log(q) - np.log(2 * np.pi)
    se = np.sqrt(q * (1 - q) / 20_000) / q
    assert abs(cur.log_density_threshold - exact) < Z * se


@pytest.mark.parametrize("fa,fr", [(0.2, 0.1), (0.0, 0.3), (0.05, 0.0)])
def test_verifier_error_rates_are_binomial(fa, fr):
    n = 20_000
    cur, ds = curator({"name": "verify", "quantile": 0.3, "false_accept": fa, "false_reject": fr})
    x = 1.5 * np.random.default_rng(4).standard_normal((n, 2))  # both right and wrong candidates
    out = cur.curate(Samples(x), n, real=Samples(x[:10]), seed=8)
    right = ds.log_density(x) >= cur.log_density_threshold
    accepted = np.zeros(n, bool)
    accepted[out.index] = True
    n_wrong, n_right = (~right).sum(), right.sum()
    assert n_wrong > 3000 and n_right > 3000
    false_accept = accepted[~right].mean()
    false_reject = (~accepted[right]).mean()
    assert abs(false_accept - fa) <= Z * np.sqrt(fa * (1 - fa) / n_wrong) + 1e-12
    assert abs(false_reject - fr) <= Z * np.sqrt(fr * (1 - fr) / n_right) + 1e-12
    assert out.examined == n and len(out.index) == accepted.sum()


def test_verifier_keeps_the_first_accepted_in_candidate_order():
    cur, ds = curator({"name": "verify", "quantile": 0.5})
    x = np.random.default_rng(1).standard_normal((400, 2))
    out = cur.curate(Samples(x), 50, real=Samples(x[:5]), seed=0)
    right = np.flatnonzero(ds.log_density(x) >= cur.log_density_threshold)
    # exact: indices; the same log_density on the same rows (a threshold tie within rounding has probability ~0)
    np.testing.assert_array_equal(out.index, right[:50])
    assert out.examined == right[49] + 1


def test_detector_resamples_in_proportion_to_the_importance_weights():
    b = 2.0
    cur, _ = curator({"name": "detector", "b": b, "pool": 1})
    rng = np.random.default_rng(2)
    real = Samples(rng.standard_normal((1000, 2)))
    cand = Samples(np.concatenate([rng.standard_normal((500, 2)), 0.3 * rng.standard_normal((500, 2)) + 2.0]))
    w = (1 - cur.synthetic_probability(cand, real, seed=5)) ** b
    share = w[500:].sum() / w.sum()  # expected fraction of kept samples from the off-distribution half
    # 1,000 resampled with replacement: the count from that half is Binomial(1000, share)
    out = cur.curate(cand, 1000, real=real, seed=5)
    got = (out.index >= 500).mean()
    assert abs(got - share) <= Z * np.sqrt(share * (1 - share) / 1000)
    assert share < 0.2  # the detector sees the shrunken, shifted half


def test_detector_with_b_zero_resamples_uniformly():
    cur, _ = curator({"name": "detector", "b": 0.0})
    rng = np.random.default_rng(3)
    cand = Samples(rng.standard_normal((2000, 2)) + 1)
    out = cur.curate(cand, 2000, real=Samples(rng.standard_normal((500, 2))), seed=1)
    half = (out.index < 1000).mean()
    assert abs(half - 0.5) <= Z * np.sqrt(0.25 / 2000)
