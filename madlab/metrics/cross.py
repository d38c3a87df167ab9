"""Cross-member metrics of an ecosystem (issue 23): how alike the members' samples are.

Homogenisation shows as the pairwise distance between members' samples shrinking. Vectors: the
exact empirical W2 (:func:`madlab.metrics.lowdim.w2_empirical`, on up to ``MAX_EXACT`` rows);
tokens: the total-variation distance between the members' unigram distributions (padding
ignored). Images have no cross-member metric yet (the feature metrics need the extractor's
features of both sets; not built).
"""
from __future__ import annotations

import itertools

import numpy as np

from madlab.metrics.lowdim import MAX_EXACT, w2_empirical

#: the cross-member metric of each data kind
CROSS_METRIC = {"vector": "cross_w2", "tokens": "cross_unigram_tv"}


def unigram_tv(x: np.ndarray, y: np.ndarray) -> float:
    """Total variation between the unigram distributions of two token arrays (-1 is padding)."""
    a, b = x[x >= 0], y[y >= 0]
    size = int(max(a.max(initial=0), b.max(initial=0))) + 1
    p = np.bincount(a, minlength=size) / max(len(a), 1)
    q = np.bincount(b, minlength=size) / max(len(b), 1)
    return float(0.5 * np.abs(p - q).sum())


def pair_distance(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    if kind == "vector":
        n = min(len(x), len(y), MAX_EXACT)
        return w2_empirical(np.asarray(x[:n], np.float64), np.asarray(y[:n], np.float64))
    if kind == "tokens":
        return unigram_tv(np.asarray(x), np.asarray(y))
    raise ValueError(f"no cross-member metric for {kind} data")


def cross_member(kind: str, samples: dict[str, np.ndarray]) -> dict[str, float]:
    """``{"a~b": distance, ..., "mean": mean}`` over every pair of members (names sorted)."""
    if kind not in CROSS_METRIC or len(samples) < 2:
        return {}
    out = {f"{i}~{j}": pair_distance(kind, samples[i], samples[j])
           for i, j in itertools.combinations(sorted(samples), 2)}
    out["mean"] = float(np.mean(list(out.values())))
    return out
