"""Ecosystems: several generators feeding one another (issue 23). One generation is a barrier.

    generation t:  for every member i, independently (one task each):
                     plan(i, t) = real rows (fixed / fresh / none, as ``ecosystem.real``)
                                + m_ij rows of member j's generation t-1 samples for every j (mixing W)
                                  or a seeded subsample of the public pool (everything published so far)
                     -> fit -> sample -> [curation] -> metrics -> publish gen-t   (madlab.engine.loop's step)
                   barrier: every member has published t -> cross-member metrics -> generation t+1

A member is a run (a :class:`~madlab.engine.loop.Loop` whose plan reads its peers' published
generations), so everything a run has (resume from the last published generation, curation,
metrics, checks, atomic publication) holds per member. Its seed comes from the ecosystem seed and
its *name* (:func:`madlab.schema.ecosystem.member_seed`), and every stream from (member seed,
purpose, generation), so a step is pure and member order changes nothing.

Counts. Member i takes ``m_ij`` of its ``n_synthetic_i`` synthetic rows from member j, W_ij n_synthetic_i
rounded by largest remainder (ties by member name) so the row sums exactly. Member j samples
``produced_j = max(n_synthetic_j, sum_i m_ij)`` rows a generation and hands consumer i the disjoint
block at ``offset_ij`` (consumers in name order): consumers get independent samples, which the
second-moment recursion of :func:`moment_recursion` assumes. A single member with W = [[1]] takes
rows [0, n_synthetic) of its own previous generation: exactly the plain loop's plan.

Pool. Member j publishes ``pool.publish`` of its kept rows every generation (a seeded choice:
``publish`` purpose); at generation t member i trains on its real rows plus ``n_synthetic_i`` rows
drawn uniformly without replacement (``pool`` purpose) from everything published at generations < t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from madlab.engine.loop import Loop, derive_seed
from madlab.metrics.cross import cross_member, pair_distance
from madlab.schema.ecosystem import EcosystemConfig, MixingCounts, member_seed
from madlab.schema.schemes import Part, Plan
from madlab.store.storage import RunStore


@dataclass(frozen=True)
class MemberPlan(Plan):
    """A member's training-set plan: synthetic parts' sources are ``(member, generation)``."""

    pooled: bool = False

    def from_members(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for part in self.parts:
            if part.source != "real":
                counts[part.source[0]] = counts.get(part.source[0], 0) + part.count
        return counts

    def provenance(self) -> dict:
        counts = self.from_members()
        return {"n_train_real": self.n_real, "n_train_synthetic": self.n_synthetic,
                "synthetic_from": ",".join(f"{m}:{c}" for m, c in sorted(counts.items())),
                "n_train_pool": self.n_synthetic if self.pooled else 0}

    def record(self) -> list[dict]:
        """The parts as JSON (what the ecosystem's generation record stores)."""
        return [{"source": p.source if p.source == "real" else list(p.source), "n": p.n, "offset": p.offset,
                 **({"select": list(p.select)} if p.select is not None else {})} for p in self.parts]


class Ecosystem:
    """The pure plan of an ecosystem: counts, blocks, publications and every member's training set."""

    def __init__(self, config: EcosystemConfig, seed: int):
        self.config, self.seed = config, seed
        self.mix = MixingCounts(config)
        self.members, self.names, self.counts = self.mix.members, self.mix.names, self.mix.counts
        self.produced, self.offset = self.mix.produced, self.mix.offset
        self.seeds = {name: member_seed(seed, name) for name in self.names}

    def published(self, j: str, g: int) -> np.ndarray:
        """The rows of member j's generation-g samples it publishes to the pool (seeded, sorted)."""
        rng = np.random.default_rng(derive_seed(self.seeds[j], "publish", g))
        return np.sort(rng.choice(self.produced(j), size=self.config.pool.publish, replace=False))

    def plan(self, i: str, t: int) -> MemberPlan:
        member, real = self.members[i], self.config.real
        first = member.n_initial or member.n_real
        if t == 1:
            return MemberPlan(1, (Part("real", first, 0),))
        parts = []
        if real == "fixed":
            parts.append(Part("real", member.n_real, 0))
        elif real == "fresh":
            parts.append(Part("real", member.n_real, first + (t - 2) * member.n_real))
        if self.config.pool is None:
            parts += [Part((j, t - 1), self.counts[i][j], self.offset(i, j)) for j in self.names]
        else:
            parts += self._pool_parts(i, t)
        return MemberPlan(t, tuple(p for p in parts if p.count), pooled=self.config.pool is not None)

    def _pool_parts(self, i: str, t: int) -> list[Part]:
        sources = [(j, g) for g in range(1, t) for j in self.names]
        rows = [self.published(j, g) for j, g in sources]
        total = sum(len(r) for r in rows)
        want = self.members[i].n_synthetic
        rng = np.random.default_rng(derive_seed(self.seeds[i], "pool", t))
        chosen = np.sort(rng.choice(total, size=min(want, total), replace=False))
        bounds = np.cumsum([0] + [len(r) for r in rows])
        parts = []
        for (j, g), published, lo, hi in zip(sources, rows, bounds[:-1], bounds[1:]):
            picked = published[chosen[(chosen >= lo) & (chosen < hi)] - lo]
            if len(picked):
                parts.append(Part((j, g), self.produced(j), 0, tuple(int(r) for r in picked)))
        return parts

    def pool_size(self, t: int) -> int:
        """Rows in the pool that generation t trains on (published at generations < t)."""
        return 0 if self.config.pool is None else (t - 1) * len(self.names) * self.config.pool.publish


class MemberLoop(Loop):
    """One member's run: a :class:`Loop` whose plan is the ecosystem's and whose synthetic rows
    come from its peers' published generations (``peers``: member name -> run folder)."""

    def __init__(self, config, run_dir, *, ecosystem: Ecosystem, member: str, peers: dict[str, str], **kwargs):
        super().__init__(config, run_dir, **kwargs)
        self.ecosystem, self.member = ecosystem, member
        self.peers = {name: RunStore(folder) for name, folder in peers.items()}
        self._peer_samples: dict[tuple[str, int], object] = {}

    def plan(self, t: int) -> MemberPlan:
        return self.ecosystem.plan(self.member, t)

    def _materialise(self, part: Part):
        if part.source == "real":
            return super()._materialise(part)
        if part.source not in self._peer_samples:
            self._peer_samples[part.source] = self.peers[part.source[0]].samples(part.source[1])
        rows = self._peer_samples[part.source]
        if part.select is not None:
            return rows.take(np.asarray(part.select, dtype=np.int64))
        return rows.take(slice(part.offset, part.offset + part.n))

    def step(self, t: int) -> dict:
        self._peer_samples = {k: v for k, v in self._peer_samples.items() if k[1] >= t - 1}
        return super().step(t)


def generation_record(ecosystem: Ecosystem, kind: str, stores: dict[str, RunStore], t: int, real=None) -> dict:
    """What an ecosystem records once every member has published generation t (pure: a function of
    the published generations): each member's plan (the rows it trained on, from where), the
    cross-member distances and, with a pool, the pool's size and its distance to ``real``."""
    samples = {name: stores[name].samples(t).x for name in ecosystem.names}
    record = {"generation": t, "plans": {name: ecosystem.plan(name, t).record() for name in ecosystem.names},
              "cross": cross_member(kind, samples), "pool": {}}
    if ecosystem.config.pool is not None:
        pool = [stores[j].samples(g).x[ecosystem.published(j, g)] for g in range(1, t + 1) for j in ecosystem.names]
        record["pool"]["pool_size"] = float(sum(len(p) for p in pool))
        if kind == "vector" and real is not None:
            rows = np.concatenate(pool)
            rng = np.random.default_rng(derive_seed(ecosystem.seed, "pool", t))
            chosen = rows[np.sort(rng.choice(len(rows), size=min(len(rows), len(real)), replace=False))]
            record["pool"]["pool_w2"] = pair_distance("vector", chosen, real)
    return record


def moment_recursion(ecosystem: Ecosystem, generations: int, variance: float = 1.0) -> dict[str, np.ndarray]:
    """The exact first two moments of Gaussian members (mean + unbiased covariance fits) on
    N(μ, variance·I) data, per coordinate, for ``real: fresh`` or ``real: none``.

    With e_i = μ̂_i − μ, counts m_ij (rows member i takes from member j), n_r,i fresh real rows,
    n_i = n_r,i + Σ_j m_ij and λ_j member j's bias, given generation t−1 member i's mean is
        e_i,t = (1/n_i)[Σ_real (x − μ) + Σ_j Σ_(m_ij rows) y],   y ~ N(μ_j, λ_j σ̂²_j), rows independent
    so E[e_t | t−1] = Q e_(t−1) with Q_ij = m_ij / n_i, and with A = E[e eᵀ] (member × member), b_i = E σ̂²_i:
        A_t = Q A_(t−1) Qᵀ + diag((n_r σ² + Σ_j m_ij λ_j b_j) / n_i²)          (disjoint blocks: independent noise)
        b_i,t = [(1 − 1/n_i)(n_r σ² + Σ_j m_ij λ_j b_j) + Σ_j m_ij A_jj − m_iᵀ A m_i / n_i] / (n_i − 1)
    (E Σ_k (x_k − x̄)² = (1 − 1/n) Σ_k σ_k² + Σ_k (c_k − c̄)² for independent rows of means c_k;
    the between-group term needs E μ_j μ_l = A_jl). Generation 1: A = diag(σ²/n_1,i), b = σ².
    Every row keeping fresh real data: A stays bounded (it converges when the spectral radius of
    Q is < 1). No real data and λ = 1: b stays σ² and A grows by Q-weighted σ²/n a generation,
    linearly. ``real: fixed`` correlates the real rows across generations: not covered (ValueError).

    Returns ``{"mean_sq": (T, M), "var": (T, M), "cross": (T, M, M) = A, "names": [...]}`` in name order;
    E|μ̂_i − μ̂_j|² = d (A_ii + A_jj − 2 A_ij) is the homogenisation of the means.
    """
    config = ecosystem.config
    if config.real == "fixed":
        raise ValueError("moment_recursion covers real: fresh and real: none (fixed real rows are correlated)")
    names = ecosystem.names
    m = np.array([[ecosystem.counts[i][j] for j in names] for i in names], dtype=np.float64)
    members = [ecosystem.members[i] for i in names]
    n_r = np.array([mb.n_real if config.real == "fresh" else 0 for mb in members], dtype=np.float64)
    n1 = np.array([mb.n_initial or mb.n_real for mb in members], dtype=np.float64)
    lam = np.array([mb.bias for mb in members], dtype=np.float64)
    n = n_r + m.sum(1)
    a, b = np.diag(variance / n1), np.full(len(names), variance)
    mean_sq, var, cross = [np.diag(a).copy()], [b.copy()], [a.copy()]
    for _ in range(2, generations + 1):
        q = m / n[:, None]
        spread = n_r * variance + m @ (lam * b)
        between = m @ np.diag(a) - np.einsum("ij,jl,il->i", m, a, m) / n
        a, b = q @ a @ q.T + np.diag(spread / n**2), ((1 - 1 / n) * spread + between) / (n - 1)
        mean_sq.append(np.diag(a).copy())
        var.append(b.copy())
        cross.append(a.copy())
    return {"mean_sq": np.array(mean_sq), "var": np.array(var), "cross": np.array(cross), "names": list(names)}
