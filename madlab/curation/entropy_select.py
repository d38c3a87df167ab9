"""``entropy-select``: keep the synthetic subset of largest estimated entropy (Shi et al., NeurIPS 2025).

Shi et al. ("A Closer Look at Model Collapse: From a Generalization-to-Memorization Perspective",
arXiv 2509.16499) find that self-consuming diffusion loops drift from generalising to memorising as the
Kozachenko–Leonenko entropy of their training data falls, and counter it by selecting the synthetic
data of largest estimated entropy (their "greedy selection"). This curator draws ``pool`` candidates
per kept sample and builds the kept set greedily: a seeded random first sample, then at each step the
candidate whose addition maximises the Kozachenko–Leonenko estimate (k = 1, Shi et al.'s setting) of the
kept set. With k = 1 and the set size fixed at each step, that estimate ranks candidates c by

    log d(c, S) + sum_{i in S} log min(r_i, d(i, c))      (r_i: member i's nearest other member)

— far from the kept set, without stealing a member's only close neighbour. The sums are kept up to
date incrementally (a new member changes only its own term and those of members it is now nearest to),
so a step costs one distance row per changed member, O(n_candidates * d) each, not a full recount.
Exact copies (distance 0) score -inf and are kept only if nothing else is left. Images are compared
on their pixels (Shi et al.'s pixel-space entropy).

``reward_before`` / ``reward_after``: the entropy estimate (k = 1, nats, on the same coordinates) of the
first ``n_keep`` candidates (what an uncurated loop keeps) and of the kept set.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from madlab.core.samples import Samples
from madlab.metrics.memorisation import Reference
from madlab.plugins.curator import Curated, Curator, CuratorParams


def _row(x: np.ndarray, i: int) -> np.ndarray:
    """Distances of every candidate to candidate i: direct differences, so equal rows are exactly 0 and a
    pair's distance is the same bits whichever row it is computed from."""
    return np.sqrt(((x - x[i]) ** 2).sum(1))


def greedy_entropy_selection(x: np.ndarray, n_keep: int, seed: int) -> np.ndarray:
    """Indices of ``n_keep`` rows of ``x`` (n, d) chosen greedily for the largest k = 1 entropy estimate."""
    n = len(x)
    first = int(np.random.default_rng(seed).integers(n))
    chosen, member = [first], np.zeros(n, dtype=bool)
    member[first] = True
    nearest = _row(x, first)  # each candidate's distance to the kept set
    radius = {first: np.inf}  # each member's distance to its nearest other member
    gain = np.zeros(n)  # sum over members i of log min(r_i, d(i, c)) - log r_i (0 while r_i = inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        while len(chosen) < n_keep:
            score = np.where(member, -np.inf, np.log(nearest) + gain)
            best = int(np.argmax(score)) if np.isfinite(score).any() else int(np.flatnonzero(~member)[0])
            row = _row(x, best)
            changed = [(i, radius[i], min(radius[i], row[i])) for i in chosen if row[i] < radius[i]]
            radius[best] = nearest[best]
            gain += _term(row, radius[best], np.inf)
            for i, old, new in changed:
                radius[i] = new
                gain += _term(_row(x, i), new, old)
            chosen.append(best)
            member[best] = True
            nearest = np.minimum(nearest, row)
    return np.asarray(chosen, dtype=np.int64)


def _term(distances: np.ndarray, radius: float, old_radius: float) -> np.ndarray:
    """Change of log min(r, d(i, c)) - log r for every candidate c when member i's radius goes old -> new."""
    new = np.log(np.minimum(radius, distances)) - np.log(radius) if np.isfinite(radius) else 0.0
    old = np.log(np.minimum(old_radius, distances)) - np.log(old_radius) if np.isfinite(old_radius) else 0.0
    delta = new - old
    return np.where(np.isnan(delta), 0.0, delta)


class EntropySelect(Curator):
    """Entropy-based selection: the kept subset of largest Kozachenko–Leonenko entropy (Shi et al. 2025)."""

    name = "entropy-select"
    data_kinds = frozenset({"vector", "image"})

    class Params(CuratorParams):
        pool: float = Field(2.0, ge=1.0, le=64.0, description="candidates drawn per kept sample")

    @classmethod
    def candidates_per_kept(cls, params) -> float:
        return float(params.pool)

    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        x = np.asarray(candidates.x, dtype=np.float64).reshape(len(candidates), -1)
        n_keep = min(n_keep, len(x))
        index = greedy_entropy_selection(x, n_keep, seed)
        before, after = (Reference.of(rows, 1).entropy() if len(rows) > 1 else float("nan")
                         for rows in (x[:n_keep], x[index]))
        return Curated(candidates.take(index), index, _finite(before), _finite(after))


def _finite(value: float) -> float | None:
    """The entropy estimate as a reward, None where it is not finite (exact copies: -inf)."""
    return float(value) if np.isfinite(value) else None
