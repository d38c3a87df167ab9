"""Cross-member metrics of an ecosystem (issue 23): how alike the members' samples are.

Homogenisation shows as the pairwise distance between members' samples shrinking. Vectors: the
exact empirical W2 (:func:`madlab.metrics.lowdim.w2_empirical`, on the first ``CROSS_EXACT`` rows);
also the Fréchet distance (W2 between fitted Gaussians, less biased at small n); tokens: the total-variation distance between the members' unigram distributions (padding
ignored). Images have no cross-member metric yet (the feature metrics need the extractor's
features of both sets; not built).
"""
from __future__ import annotations

import itertools

import numpy as np

from madlab.metrics.lowdim import w2_empirical, w2_gaussian

#: rows of each member the exact W2 between two members is computed on (the Hungarian assignment is O(n^3):
#: at MAX_EXACT = 1000 rows one pair cost ~0.4 s on this machine, more than a cheap member's whole step)
CROSS_EXACT = 300
#: the cross-member metrics of each data kind
CROSS_METRICS = {"vector": ("cross_w2", "cross_frechet"), "tokens": ("cross_unigram_tv",)}


def unigram_tv(x: np.ndarray, y: np.ndarray) -> float:
    """Total variation between the unigram distributions of two token arrays (-1 is padding)."""
    a, b = x[x >= 0], y[y >= 0]
    size = int(max(a.max(initial=0), b.max(initial=0))) + 1
    p = np.bincount(a, minlength=size) / max(len(a), 1)
    q = np.bincount(b, minlength=size) / max(len(b), 1)
    return float(0.5 * np.abs(p - q).sum())


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """W2 between the Gaussians fitted to two sample sets (the Fréchet distance of FID, on raw
    coordinates): far less biased at small n than the empirical W2, whose floor at n = 100 in 2-D
    is about 0.5 for two samples of one distribution."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return w2_gaussian(x.mean(0), np.atleast_2d(np.cov(x, rowvar=False)), y.mean(0),
                       np.atleast_2d(np.cov(y, rowvar=False)))


def pair_distance(kind: str, x: np.ndarray, y: np.ndarray, metric: str | None = None) -> float:
    if metric == "cross_frechet":
        return frechet(x, y)
    if kind == "vector":
        n = min(len(x), len(y), CROSS_EXACT)
        return w2_empirical(np.asarray(x[:n], np.float64), np.asarray(y[:n], np.float64))
    if kind == "tokens":
        return unigram_tv(np.asarray(x), np.asarray(y))
    raise ValueError(f"no cross-member metric for {kind} data")


def cross_member(kind: str, samples: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{metric: {"a~b": distance, ..., "mean": mean}}`` over every pair of members (names sorted)."""
    if kind not in CROSS_METRICS or len(samples) < 2:
        return {}
    out = {}
    for metric in CROSS_METRICS[kind]:
        pairs = {f"{i}~{j}": pair_distance(kind, samples[i], samples[j], metric)
                 for i, j in itertools.combinations(sorted(samples), 2)}
        out[metric] = {**pairs, "mean": float(np.mean(list(pairs.values())))}
    return out
