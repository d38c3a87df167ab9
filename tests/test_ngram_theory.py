"""Closed forms of the unigram model's collapse (the theory model of text collapse).

A unigram with ``add_k: 0`` fitted on M tokens is the empirical token distribution p̂, and
sampling M' tokens from it at λ = 1 is a multinomial draw: refitting on samples is Wright–Fisher
resampling. With fixed-length rows (the ``zipf-text`` source) this is exact, so:

* Gini–Simpson GS = 1 − Σp²:  E[GS(p̂_t) | p_{t−1}] = (1 − 1/M_t) · GS(p_{t−1}),
  hence E[GS_t] = GS(p) · Π_{s ≤ t} (1 − 1/M_s) under fully-synthetic refits from the truth p.
* support S = #{i: p̂_i > 0}:  E[S_t | p_{t−1}] = Σ_i 1 − (1 − p_{t−1,i})^{M_t}, and S never grows.
* fixed real data mixed in (R real tokens with frequencies r, S synthetic): p_t = a r + (1 − a) q_t,
  a = R/(R+S), q_t ~ Multinomial(S, p_{t−1})/S. Then E[r·p_t] = Σr² for all t and
  E[Σp_t²] = (1 − (1−a)²) Σr² + (1−a)² [(1 − 1/S) E[Σp_{t−1}²] + 1/S], a linear recursion with
  fixed point Q* = [(1 − (1−a)²) Σr² + (1−a)²/S] / [1 − (1−a)²(1 − 1/S)].

Each check averages a per-seed quantity whose expectation is zero under the closed form over many
seeds and requires |mean| ≤ z · (standard error), z from a Bonferroni bound at 0.1 % over all
checks of the file; a check also shows the tolerance is tight enough to reject a wrong law.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from madlab.datasets.text import ZipfTextDataset
from madlab.core.samples import Samples
from madlab_generators.ngram import NGramGenerator

V, L, N_ROWS, GENERATIONS, SEEDS = 20, 5, 20, 12, 300
M = N_ROWS * L  # tokens per training set
Z = norm.ppf(1 - 1e-3 / (2 * 40))  # about 40 mean-zero checks in this file


def _source():
    return ZipfTextDataset(ZipfTextDataset.Params(vocab_size=V, max_tokens=L, exponent=1.1))


def _unigram():
    return NGramGenerator(NGramGenerator.Params(order=1, add_k=0.0), data_shape=(L,), vocab_size=V)


def _assert_mean_zero(diffs: np.ndarray, what: str) -> None:
    mean, se = diffs.mean(), diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert abs(mean) <= Z * se + 1e-12, f"{what}: mean {mean:.5g} vs tolerance {Z * se:.3g}"


def _fully_synthetic_chain(seed: int, source):
    """[(p_{t-1}, p_t)] for t = 1..GENERATIONS; p_0 = truth."""
    gen = _unigram()
    gen.fit(source.draw(N_ROWS, seed=seed), seed=0)
    chain = [(source.true_unigram(), gen.unigram())]
    for t in range(2, GENERATIONS + 1):
        data = gen.sample(N_ROWS, bias=1.0, seed=seed * 1000 + t)
        fresh = _unigram()
        fresh.fit(data, seed=0)
        chain.append((chain[-1][1], fresh.unigram()))
        gen = fresh
    return chain


@pytest.fixture(scope="module")
def chains():
    source = _source()
    return [_fully_synthetic_chain(seed, source) for seed in range(SEEDS)]


def _gs(p):
    return 1.0 - (p**2).sum(-1)


def test_samples_are_exactly_fixed_length(chains):
    gen = _unigram()
    gen.fit(_source().draw(N_ROWS, seed=0), seed=0)
    x = gen.sample(50, bias=1.0, seed=1).x
    assert (x >= 0).all(), "no end marker was ever seen, so no row may end early"


def test_gini_simpson_decays_by_one_minus_one_over_m(chains):
    prev = np.array([[a for a, _ in c] for c in chains])  # (seeds, t, V)
    cur = np.array([[b for _, b in c] for c in chains])
    for t in range(GENERATIONS):
        _assert_mean_zero(_gs(cur[:, t]) - (1 - 1 / M) * _gs(prev[:, t]), f"one-step GS, generation {t + 1}")
    truth = _source().true_unigram()
    expected = _gs(truth) * (1 - 1 / M) ** np.arange(1, GENERATIONS + 1)
    final = _gs(cur[:, -1])
    _assert_mean_zero(final - expected[-1], "unconditional GS at the last generation")
    # the tolerance is tight enough to reject "no drift" (GS stays at the truth's)
    se = final.std(ddof=1) / np.sqrt(len(final))
    assert abs(final.mean() - _gs(truth)) > Z * se


def test_support_expectation_and_monotone(chains):
    prev = np.array([[a for a, _ in c] for c in chains])
    cur = np.array([[b for _, b in c] for c in chains])
    support = (cur > 0).sum(-1)
    for t in range(GENERATIONS):
        expected = (1 - (1 - prev[:, t]) ** M).sum(-1)
        _assert_mean_zero(support[:, t] - expected, f"support, generation {t + 1}")
    assert (np.diff(support, axis=1) <= 0).all(), "a maximum-likelihood unigram can never regain a lost token"
    assert support[:, -1].mean() < support[:, 0].mean()


def test_fixed_point_with_real_data_mixed_in():
    source = _source()
    r_rows, s_rows, gens, seeds = 10, 30, 10, 200
    r_tok, s_tok = r_rows * L, s_rows * L
    a = r_tok / (r_tok + s_tok)
    gs_diff = np.zeros((seeds, gens))
    cross_diff = np.zeros((seeds, gens))
    last_q = np.zeros(seeds)
    r2_all = np.zeros(seeds)
    fixed_point = np.zeros(seeds)
    for seed in range(seeds):
        real = source.draw(r_rows, seed=seed)
        gen = _unigram()
        gen.fit(real, seed=0)
        r = gen.unigram()
        r2 = r2_all[seed] = (r**2).sum()
        q_pred = r2  # generation 1 is fitted on the real rows alone
        for t in range(2, gens + 1):
            synthetic = gen.sample(s_rows, bias=1.0, seed=seed * 1000 + t)
            gen = _unigram()
            gen.fit(Samples.concat([real, synthetic]), seed=0)
            p = gen.unigram()
            q_pred = (1 - (1 - a) ** 2) * r2 + (1 - a) ** 2 * ((1 - 1 / s_tok) * q_pred + 1 / s_tok)
            gs_diff[seed, t - 1] = (p**2).sum() - q_pred
            cross_diff[seed, t - 1] = (r * p).sum() - r2
        last_q[seed] = (p**2).sum()
        fixed_point[seed] = ((1 - (1 - a) ** 2) * r2 + (1 - a) ** 2 / s_tok) / (1 - (1 - a) ** 2 * (1 - 1 / s_tok))
    for t in range(1, gens):
        _assert_mean_zero(gs_diff[:, t], f"Σp² with real data, generation {t + 1}")
        _assert_mean_zero(cross_diff[:, t], f"r·p with real data, generation {t + 1}")
    # the recursion contracts by (1 - a)^2 (1 - 1/S) ≈ 0.56 a generation: by the last one the loop
    # sits at its fixed point, which keeps diversity (fully-synthetic refits would keep losing it)
    _assert_mean_zero(last_q - fixed_point, "Σp² at the fixed point")
    se = last_q.std(ddof=1) / np.sqrt(seeds)
    without_real = 1 - (1 - r2_all) * (1 - 1 / s_tok) ** (gens - 1)  # E[Σp²] had the real rows been dropped
    assert abs(last_q.mean() - without_real.mean()) > Z * se


def test_temperature_sharpens_the_unigram():
    """λ < 1 samples p^(1/λ) (normalised): token frequencies over many samples match it."""
    gen = _unigram()
    gen.fit(_source().draw(400, seed=3), seed=0)
    p = gen.unigram()
    for lam in (0.5, 1.0):
        target = p ** (1 / lam) / (p ** (1 / lam)).sum()
        x = gen.sample(4000, bias=lam, seed=9).x
        counts = np.bincount(x.ravel(), minlength=V)
        n = counts.sum()
        # per-token binomial z-scores of the observed counts
        zscores = (counts - n * target) / np.sqrt(n * target * (1 - target) + 1e-300)
        assert np.abs(zscores[target > 0]).max() < norm.ppf(1 - 1e-3 / (2 * V))
        assert counts[target == 0].sum() == 0
    greedy = gen.sample(10, bias=0.0, seed=1).x
    assert (greedy == int(np.argmax(p))).all()
