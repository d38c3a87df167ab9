"""Intervals over seeds: the small statistics every analysis of a results folder shares.

Seeds are the replication unit: runs that differ only in ``seed`` are independent draws of the
same loop, and arms that share seeds are paired (madlab seeds every random choice from
(seed, generation, purpose), so two arms with the same seed share their real draws: common
random numbers). Every interval here is over seeds, never over generations, whose values
within one run are correlated.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

#: sign patterns enumerated exactly up to this many seeds (2^16 = 65,536), sampled beyond
EXACT_SIGN_FLIPS = 16
SIGN_FLIP_DRAWS = 20_000


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of Student's t interval for the mean of ``values`` (NaNs dropped).

    With one value the interval is (nan, nan); the t interval is exact for normal values and
    close for sums/averages of many generations' noise, which is what per-seed statistics are."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def one_sided_bounds(values, alpha: float) -> tuple[float, float, float, int]:
    """(mean, lower, upper, n): each bound a one-sided level-``alpha`` t bound for the mean."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return (float(x.mean()) if n else math.nan), -math.inf, math.inf, n
    mean = float(x.mean())
    half = float(stats.t.ppf(1 - alpha, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def sign_flip_p(diffs, seed: int = 0) -> tuple[float, float]:
    """Two-sided sign-flip (randomisation) p-value of H0 "paired differences symmetric about 0",
    with statistic |mean|, and the smallest p-value this many seeds can give (2 / 2^n exactly:
    with 5 seeds no difference can reach p < 0.0625). Exact up to EXACT_SIGN_FLIPS seeds."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return math.nan, math.nan
    observed = abs(d.mean())
    if n <= EXACT_SIGN_FLIPS:
        signs = _all_signs(n)
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(SIGN_FLIP_DRAWS, n))
    flipped = np.abs(signs @ d) / n
    tol = 1e-12 * max(1.0, observed)  # ties: the observed pattern itself and its mirror count as extreme
    p = float(np.mean(flipped >= observed - tol))
    floor = 2.0 / 2**n if n <= EXACT_SIGN_FLIPS else 1.0 / SIGN_FLIP_DRAWS
    return p, floor


@lru_cache(maxsize=EXACT_SIGN_FLIPS + 1)
def _all_signs(n: int) -> np.ndarray:
    """The 2^n sign patterns of n values, one per row."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return 1.0 - 2.0 * bits


def bootstrap_indices(n: int, draws: int, seed: int = 0) -> np.ndarray:
    """(draws, n) indices of seeds resampled with replacement (a fixed seed: same folder, same interval)."""
    return np.random.default_rng(seed).integers(0, n, size=(draws, n))


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; +inf replicates (a curve that never crossed)
    stay infinite, so an upper end of inf says "may not cross within the generations run"."""
    r = np.asarray(replicates, dtype=float)
    r = r[~np.isnan(r)]
    if not len(r):
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    return float(np.quantile(r, tail, method="lower")), float(np.quantile(r, 1 - tail, method="higher"))
