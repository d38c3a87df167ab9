"""Memorisation and novelty metrics (madlab.metrics.memorisation) against brute force, their limiting
cases (samples = training set, duplicates), the Kozachenko–Leonenko estimate against the Gaussian's
closed-form entropy, and the loop/batched engine handing each generation's training set to them."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import digamma, gamma as gamma_fn

from fp import U32, U64, gamma
from madlab.metrics.memorisation import COPY_RATIO, Reference, memorisation, memorisation_metrics


def brute(train: np.ndarray, samples: np.ndarray, k: int = 5) -> dict[str, float]:
    """The definitions of madlab.metrics.memorisation, one sample at a time in float64 (scipy's cdist)."""
    dt = cdist(train, train)
    np.fill_diagonal(dt, np.inf)
    r = dt.min(1)
    out = {"authenticity": 0.0, "copy": 0.0}
    ratios = []
    for x in samples:
        d = np.sqrt(((train - x) ** 2).sum(1))
        order = np.argsort(d, kind="stable")
        d1, d2 = d[order[0]], d[order[1]]
        out["authenticity"] += d1 > r[order[0]]
        out["copy"] += (d1 < COPY_RATIO * d2) or d1 == 0
        ratios.append(d1 / r.mean())
    n, dim = train.shape
    eps = np.sort(dt, 1)[:, k - 1]  # k-th nearest other row (the diagonal is inf)
    entropy = digamma(n) - digamma(k) + np.log(np.pi ** (dim / 2) / gamma_fn(dim / 2 + 1)) + dim * np.log(eps).mean()
    return {"authenticity": out["authenticity"] / len(samples), "copy_rate": out["copy"] / len(samples),
            "novelty": float(np.mean(ratios)), "novelty_q50": float(np.quantile(ratios, 0.5)), "train_entropy": entropy}


@pytest.mark.parametrize("dim,dtype", [(2, np.float64), (7, np.float64), (16, np.float32)])
def test_against_brute_force(dim, dtype):
    rng = np.random.default_rng(dim)
    train = rng.standard_normal((300, dim)).astype(dtype)
    # half fresh draws, a quarter exact copies, a quarter near copies (a small jitter)
    samples = np.concatenate([rng.standard_normal((100, dim)), train[:50], train[50:100] + 0.01]).astype(dtype)
    ours = memorisation_metrics(samples, train, None, k=5)
    ref = brute(train.astype(np.float64), samples.astype(np.float64))
    # torch.cdist forms d^2 = |a|^2 + |b|^2 - 2 a.b (sums of at most 2 dim + 2 terms), so its absolute error
    # in d^2 is at most gamma(2 dim + 2) (|a|^2 + |b|^2 + 2|a||b|) <= gamma * 4 max|x|^2, a relative error of
    # half that over d^2 in d; the smallest non-zero distance here is a near copy's, about 0.01 sqrt(dim)
    # (exact copies are exactly 0 by exact_cdist). The counts could only move if a ratio sat that close to
    # its threshold: 1e-10 away in float64, which these draws do not have.
    u = U64 if dtype == np.float64 else U32
    smallest = (0.01 * np.sqrt(dim) * 0.5) ** 2
    tol = gamma(2 * dim + 2, u) * 4 * float((samples.astype(np.float64) ** 2).sum(1).max()) / smallest
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, rel=tol, abs=tol), name
    assert 0.3 < ours["copy_rate"] < 0.9 and 0.05 < ours["authenticity"] < 0.5  # a non-trivial case


def test_samples_equal_to_the_training_set():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((200, 3))
    out = memorisation_metrics(train.copy(), train, Reference.of(rng.standard_normal((150, 3))), k=5)
    # exact: every sample has a distance-0 copy (exact_cdist sets equal rows to 0), so the counts are whole
    assert out["copy_rate"] == 1.0 and out["authenticity"] == 0.0
    assert out["novelty"] == out["novelty_q90"] == 0.0
    # against held-out data the same samples look like fresh draws: no copies, novelty about 1
    assert out["copy_rate_heldout"] < 0.3 and 0.6 < out["novelty_heldout"] < 1.5


def test_fresh_draws_score_novelty_about_one():
    """A fresh draw's distance to its nearest training row has the law of a training row's distance to its
    nearest *other* row among n - 1 (exchangeability), so E[novelty] = E[d1(n)] / E[r(n-1)] = 1 + O(1/n).
    The mean of m = 2000 ratios has standard error sd(ratio) / sqrt(m) (sd about 0.52 in 2-D: d1 is Rayleigh-
    like, sd/mean = sqrt(4/pi - 1)); the denominator, a mean of n = 2000 such distances, adds as much: 5 se."""
    rng = np.random.default_rng(1)
    train, fresh = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 2))
    out = memorisation_metrics(fresh, train, None, k=5)
    se = 0.53 * np.sqrt(2 / 2000)
    assert abs(out["novelty"] - 1) < 5 * se + 1 / 2000


def test_kozachenko_leonenko_matches_the_gaussian_entropy():
    """H(N(0, I_d)) = d/2 log(2 pi e). The estimator is asymptotically unbiased; its variance is about
    (Var log f(X) + psi'(k)) / n = (d/2 + psi'(5)) / n (the k-NN log-volume of a point is log f plus a
    log-Gamma(k) term of variance psi'(k); the terms are nearly uncorrelated), so in 2-D with n = 4000 the
    standard error is sqrt(1.22 / 4000) = 0.017; 5 se, plus 0.02 for the bias, which in d <= 3 is o(n^(-1/2))
    (Berrett, Samworth & Yuan 2019, Ann. Statist.: the unweighted estimator is efficient there), i.e. below
    one standard error at this n."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 2))
    estimate = Reference.of(x, 5).entropy()
    assert abs(estimate - np.log(2 * np.pi * np.e)) < 5 * np.sqrt(1.22 / 4000) + 0.02
    narrow = Reference.of(0.1 * x, 5).entropy()  # scaling by c shifts differential entropy by d log c
    assert narrow - estimate == pytest.approx(2 * np.log(0.1), abs=1e-9)


def test_duplicates():
    rng = np.random.default_rng(3)
    train = rng.standard_normal((100, 2))
    single = np.repeat(train[:1], 100, axis=0)  # a single repeated point
    out = memorisation_metrics(single, train, None, k=5)
    # exact: all 100 samples equal train[0] (distance 0), so every count is whole
    assert out["copy_rate"] == 1.0 and out["authenticity"] == 0.0 and out["novelty"] == 0.0
    half = np.concatenate([train[:50], rng.standard_normal((50, 2))])  # half copies
    out = memorisation_metrics(half, train, None, k=5)
    fresh = memorisation_metrics(half[50:], train, None, k=5)
    # exact: the 50 copies count whole (copy, not authentic); the other 50 are scored as on their own
    assert out["copy_rate"] == 0.5 + 0.5 * fresh["copy_rate"]
    assert out["authenticity"] == 0.5 * fresh["authenticity"]
    # a training set holding duplicates: a copy of a duplicated row is still a copy (d1 = d2 = 0)
    doubled = np.concatenate([train, train[:10]])
    out = memorisation_metrics(train[:10], doubled, None, k=5)
    assert out["copy_rate"] == 1.0 and out["authenticity"] == 0.0
    # entropy of a training set in which rows have k exact duplicates: -inf (a distribution with atoms)
    assert Reference.of(np.concatenate([train] + [train[:1]] * 5), 5).entropy() == -np.inf
    # every row duplicated: the novelty scale is 0, copies score 0 and other samples +inf
    assert memorisation(Reference.of(single), train[1:3])["novelty"] == np.inf
    assert memorisation(Reference.of(single), single[:3])["novelty"] == 0.0


def test_entropy_nan_without_k_neighbours_and_small_sets_rejected():
    assert np.isnan(Reference.of(np.eye(3), 5).entropy())
    with pytest.raises(ValueError, match="at least 2 rows"):
        Reference.of(np.ones((1, 2)))


MEMO_NAMES = ["w2", "authenticity", "novelty", "novelty_q50", "copy_rate", "train_entropy", "authenticity_heldout",
              "novelty_heldout", "copy_rate_heldout"]


@pytest.mark.parametrize("scheme", ["fully-synthetic", "accumulate", "accumulate-subsample"])
def test_batched_engine_equals_per_run_loop(scheme, tmp_path):
    """Both engines hand each generation's training set to the metrics (the batched one materialises the
    accumulated pool instead of fitting pooled statistics when these metrics are asked for)."""
    from test_batched import assert_same, batched_records, configs, loop_records, tolerance

    runs = configs(scheme, seeds=(0, 1), biases=(1.0,), generations=3, metrics={"k": 3, "names": MEMO_NAMES})
    for run, records in zip(runs, batched_records(runs)):
        reference = loop_records(run, tmp_path)
        for mine, theirs in zip(records, reference):
            assert set(mine["metrics"]) == set(MEMO_NAMES)
            assert_same(mine, theirs, tolerance(run))


def test_loop_scores_against_the_generations_own_training_set(tmp_path):
    """A Gaussian loop at generation 1 trains on the real rows: its samples are fresh draws from a fit, not
    copies (copy_rate well below 1, authenticity well above 0); the real-vs-real row scores a second real
    sample against the same training set; train_entropy is the KL estimate of exactly those rows."""
    from madlab.engine.loop import Loop
    from madlab.specs import build_spec
    from conftest import gaussian_spec

    spec = gaussian_spec(generations=2, n_real=200, n_synthetic=200)
    spec["metrics"] = {"k": 5, "names": MEMO_NAMES}
    (run,) = build_spec(spec).runs
    loop = Loop(run.config, tmp_path / "run")
    loop.run()
    first = loop.store.record(1)
    train = loop.training_set(loop.plan(1)).x
    # exact: the same rows through the same function
    assert first["metrics"]["train_entropy"] == Reference.of(np.asarray(train, np.float64), 5).entropy()
    assert first["metrics"]["copy_rate"] < 0.5 and first["metrics"]["authenticity"] > 0.1
    assert 0.5 < first["metadata"]["real_vs_real"]["novelty"] < 1.5
    second_train = loop.training_set(loop.plan(2)).x
    assert loop.store.record(2)["metrics"]["train_entropy"] == Reference.of(np.asarray(second_train, np.float64), 5).entropy()


def test_block_size_does_not_change_the_values(monkeypatch):
    import madlab.metrics.memorisation as memo

    rng = np.random.default_rng(7)
    train, samples = rng.standard_normal((300, 3)), rng.standard_normal((120, 3))
    whole = memorisation_metrics(samples, train, Reference.of(train[:100]), k=5)
    monkeypatch.setattr(memo, "BLOCK_ELEMENTS", 1000)  # 3 query rows per block
    # exact: float64 distances are direct differences, the same bits in any block (knn.exact_cdist)
    assert memorisation_metrics(samples, train, Reference.of(train[:100]), k=5) == whole
