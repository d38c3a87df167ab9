"""Closed forms of the bigram model (``ngram``, order 2) refitted fully-synthetically on a Markov source.

The source is ``markov-text``: rows of exactly L tokens from a stationary Markov chain (start π,
transition P). The bigram with ``add_k: 0`` fitted on N such rows D is, by maximum likelihood:
start distribution π̂ = s / N (s: first-token counts), transition rows P̂[a] = C[a] / n(a) for every
context a seen (C[a, b]: count of a followed by b, n(a) = Σ_b C[a, b]), and for a context never
followed by anything (a token seen only in the last position) the back-off to the unigram
u = token frequencies of D. Sampling N rows from it at λ = 1 is a Markov chain with start π̂ and
transition P̂, so for the next generation's data D' (counts s', C', n'), *exactly*:

* E[s' | D] = N π̂ = s                                   (first tokens: Wright–Fisher resampling);
* E[C'[a, b] − n'(a) P̂[a, b] | D] = 0                    (each visit to a moves by P̂[a]);
* E[n'(a) | D] = N Σ_{j=0}^{L−2} (π̂ P̂^j)[a]             (visits before the last position);
* E[GS(s' / N) | D] = (1 − 1/N) GS(π̂), GS = 1 − Σp²       (first tokens lose diversity);
* E[log p̂(D') | D] = −N H(π̂) − Σ_a E[n'(a) | D] H(P̂[a])  (own samples score minus the path entropy).

Generation 1 is the same statement with the truth (π, P) in place of the fitted model. Each check
averages, over many independent fully-synthetic chains, a per-seed quantity of mean zero under the
closed form (a fixed linear functional of the matrices above), and requires |mean| ≤ z · (standard
error), z from a Bonferroni bound at 0.1 % over all the checks of this file. The linear laws cannot
tell the refitted chain from the truth on average (the refits are a martingale around it); the two
nonlinear ones can, and their tolerance rejects "no drift" at the last generation.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from madlab.datasets.text import MarkovTextDataset
from madlab.core.samples import Samples
from madlab_generators.ngram import NGramGenerator

V, L, N_ROWS, GENERATIONS, SEEDS = 6, 8, 30, 8, 400
CHECKS = GENERATIONS * (3 * 3 + 2)  # (3 functionals x 3 linear laws + 2 scalar laws) per generation
Z = norm.ppf(1 - 1e-3 / (2 * CHECKS))


def _source():
    return MarkovTextDataset(MarkovTextDataset.Params(vocab_size=V, max_tokens=L, concentration=0.5, chain_seed=3))


def _bigram():
    return NGramGenerator(NGramGenerator.Params(order=2, add_k=0.0), data_shape=(L,), vocab_size=V)


def counts(x: np.ndarray):
    """(first-token counts s (V,), transition counts C (V, V)) of full-length rows, counted directly."""
    s = np.bincount(x[:, 0], minlength=V).astype(float)
    c = np.zeros((V, V))
    np.add.at(c, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1.0)
    return s, c


def fitted_chain(x: np.ndarray):
    """(π̂, P̂) the maximum-likelihood bigram of rows x is, back-off rows included (module docstring)."""
    s, c = counts(x)
    u = np.bincount(x.ravel(), minlength=V) / x.size
    n = c.sum(1, keepdims=True)
    p = np.where(n > 0, c / np.maximum(n, 1), u[None, :])
    return s / len(x), p


def expected_visits(start: np.ndarray, p: np.ndarray) -> np.ndarray:
    """N Σ_{j=0}^{L-2} (start P^j): expected visits of each state before the last position."""
    dist, total = start.copy(), np.zeros(V)
    for _ in range(L - 1):
        total += dist
        dist = dist @ p
    return N_ROWS * total


#: fixed linear functionals of a (V, V) matrix: the diagonal (self-transitions), fixed random signs,
#: and the truth's most probable transition
_SIGNS = np.random.default_rng(123).choice([-1.0, 1.0], size=(V, V))


def _functionals(m: np.ndarray, truth_p: np.ndarray) -> np.ndarray:
    top = np.unravel_index(np.argmax(truth_p), truth_p.shape)
    return np.array([np.trace(m), (_SIGNS * m).sum(), m[top]])


def _chain(seed: int, source):
    """Per generation t = 1..GENERATIONS: ((π, P) of the chain that wrote the data, the data x, the log-likelihood
    of x under the generator that wrote it: the truth's at t = 1, else the generator's ``log_likelihood``)."""
    out = []
    x = np.asarray(source.draw(N_ROWS, seed=seed).x)
    prev = (source.true_unigram(), source.transition)
    ll = float(np.log(prev[0][x[:, 0]]).sum() + np.log(prev[1][x[:, :-1], x[:, 1:]]).sum())
    for t in range(1, GENERATIONS + 1):
        out.append((prev, x, ll))
        gen = _bigram()
        gen.fit(Samples(x), seed=0)
        prev = fitted_chain(x)
        x = np.asarray(gen.sample(N_ROWS, bias=1.0, seed=seed * 1000 + t).x)
        ll, count = gen.log_likelihood(x)
        assert count == x.size  # every token scored, no end marker (rows are full)
    return out


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(-1)


def path_entropy(start: np.ndarray, p: np.ndarray) -> float:
    """Entropy of N rows of the chain: N H(start) + Σ_a E[visits(a)] H(P[a]) (the chain rule)."""
    return float(N_ROWS * _entropy(start) + expected_visits(start, p) @ _entropy(p))


@pytest.fixture(scope="module")
def chains():
    source = _source()
    return source, [_chain(seed, source) for seed in range(SEEDS)]


def _assert_mean_zero(diffs: np.ndarray, what: str) -> None:
    mean, se = diffs.mean(0), diffs.std(0, ddof=1) / np.sqrt(len(diffs))
    for i in range(diffs.shape[1]):
        assert abs(mean[i]) <= Z * se[i] + 1e-9, f"{what}, functional {i}: mean {mean[i]:.4g} vs tolerance {Z * se[i]:.3g}"


def test_rows_are_full_length_and_transitions_come_from_the_fitted_rows(chains):
    """No end marker is ever counted, so no sampled row ends early; a pair a→b from a context seen in
    the training data appears in the samples only if it was in the training data (add_k = 0)."""
    _, runs = chains
    for run in runs[:50]:
        for (_, x, _), (_, nxt, _) in zip(run[:-1], run[1:]):
            assert (nxt >= 0).all()
            _, c = counts(x)
            _, c_next = counts(nxt)
            seen = c.sum(1) > 0
            assert not ((c_next > 0) & (c == 0) & seen[:, None]).any()


def test_first_tokens_are_wright_fisher(chains):
    source, runs = chains
    for t in range(GENERATIONS):
        diffs = []
        for run in runs:
            (start, _), x, _ = run[t]
            s, _ = counts(x)
            diffs.append([s[0] - N_ROWS * start[0], s[-1] - N_ROWS * start[-1], (s - N_ROWS * start) @ np.arange(V)])
        _assert_mean_zero(np.array(diffs), f"first tokens, generation {t + 1}")


def test_transitions_follow_the_previous_model(chains):
    """E[C_t[a, b] − n_t(a) P̂_{t−1}[a, b]] = 0 at every generation (t = 1: the truth P)."""
    source, runs = chains
    for t in range(GENERATIONS):
        diffs = []
        for run in runs:
            (_, p), x, _ = run[t]
            _, c = counts(x)
            diffs.append(_functionals(c - c.sum(1, keepdims=True) * p, source.transition))
        _assert_mean_zero(np.array(diffs), f"transitions, generation {t + 1}")


def test_visits_follow_the_previous_chain(chains):
    """E[n_t(a)] = N Σ_j (π̂ P̂^j)[a] given generation t−1's model (three fixed functionals of the states)."""
    source, runs = chains
    weights = np.stack([np.eye(V)[0], np.eye(V)[V - 1], np.arange(V, dtype=float)])
    for t in range(GENERATIONS):
        diffs = []
        for run in runs:
            (start, p), x, _ = run[t]
            _, c = counts(x)
            diffs.append(weights @ (c.sum(1) - expected_visits(start, p)))
        _assert_mean_zero(np.array(diffs), f"visits, generation {t + 1}")


def test_first_tokens_lose_diversity_by_one_minus_one_over_n(chains):
    """E[GS(s_t / N) | generation t−1] = (1 − 1/N) GS(π̂_{t−1}) (Gini–Simpson, GS = 1 − Σp²); the tolerance
    rejects "no drift" (GS staying at the truth's) at the last generation."""
    source, runs = chains
    gs = lambda q: 1.0 - (q**2).sum(-1)
    for t in range(GENERATIONS):
        diffs = [[gs(counts(x)[0] / N_ROWS) - (1 - 1 / N_ROWS) * gs(start)] for (start, _), x, _ in (r[t] for r in runs)]
        _assert_mean_zero(np.array(diffs), f"first-token Gini-Simpson, generation {t + 1}")
    final = np.array([gs(counts(r[-1][1])[0] / N_ROWS) for r in runs])
    se = final.std(ddof=1) / np.sqrt(len(final))
    assert gs(source.true_unigram()) - final.mean() > Z * se


def test_own_samples_score_minus_the_path_entropy(chains):
    """E[log-likelihood of the model's own N samples | model] = −(path entropy of its chain), through the
    generator's ``log_likelihood`` (what ``perplexity`` uses) at every generation (t = 1: the truth). The
    tolerance rejects "no collapse" (the truth's path entropy) at the last generation: the refitted
    chains' entropy falls, so their own samples become more likely."""
    source, runs = chains
    for t in range(GENERATIONS):
        diffs = [[ll + path_entropy(start, p)] for (start, p), _, ll in (r[t] for r in runs)]
        _assert_mean_zero(np.array(diffs), f"self log-likelihood, generation {t + 1}")
    last = np.array([r[-1][2] for r in runs])
    truth = path_entropy(source.true_unigram(), source.transition)
    se = last.std(ddof=1) / np.sqrt(len(last))
    assert last.mean() + truth > Z * se
    # and a generator that sampled from the model one generation too old is caught at every generation
    for t in range(2, GENERATIONS):
        stale = np.array([r[t][2] + path_entropy(*r[t - 1][0]) for r in runs])
        assert stale.mean() > Z * stale.std(ddof=1) / np.sqrt(len(stale)), f"generation {t + 1}"
