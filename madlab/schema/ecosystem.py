"""The ecosystem models: several generators feeding one another, as data (schema only).

An ecosystem spec has a top-level ``ecosystem`` section instead of ``generator`` and ``loop``::

    ecosystem:
      generations: 10
      real: fixed              # fixed | fresh | none: the real data each member keeps from generation 2 on
      members:                 # each a full generator config with its own λ, sizes and curation
        - {name: a, generator: {name: gaussian}, bias: 1.0, n_real: 50, n_synthetic: 50}
        - {name: b, generator: {name: gaussian}, n_real: 50, n_synthetic: 50, curation: {...}}
      mixing: [[0.5, 0.5],     # W: row i says where member i's synthetic samples come from
               [0.5, 0.5]]     # (shares of the members' previous generation; rows sum to 1)
      # or, instead of mixing, a shared public pool ("the web"):
      # pool: {publish: 50}    # each member publishes 50 samples a generation; each trains on
      #                        # n_synthetic rows subsampled from everything published so far

What each member's training set holds at generation t is :mod:`madlab.engine.ecosystem`'s plan;
the checks that open datasets and generators are :mod:`madlab.specs.ecosystem`'s.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from madlab.schema.config import FieldProblem, MetricsConfig, ResourcesConfig, RunConfig, _slug, _Strict

#: ``ecosystem.real`` -> the single-run scheme a member with the identity mixing row reproduces
REAL_SCHEMES = {"fixed": "fixed-real", "fresh": "fresh-real", "none": "fully-synthetic"}
#: how far a mixing row's sum may be from 1 (rows are typed by hand: 1/3 + 1/3 + 1/3)
ROW_SUM_TOLERANCE = 1e-6


class MemberConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=32)
    generator: dict
    bias: float = Field(1.0, ge=0.0, description="λ: MAD's sampling bias in [0, 1], or a text "
                                                 "generator's temperature (may exceed 1)")
    n_real: int = Field(ge=0, description="real samples in the training set (generation 1: n_initial or n_real)")
    n_synthetic: int = Field(ge=0, description="synthetic samples in the training set from generation 2 on")
    n_initial: int | None = Field(None, ge=1, description="real samples at generation 1 (default n_real)")
    warm_start: bool = False
    curation: dict | None = None


class PoolConfig(_Strict):
    publish: int = Field(ge=1, description="samples each member publishes to the pool every generation")


class EcosystemConfig(_Strict):
    generations: int = Field(ge=1)
    real: Literal["fixed", "fresh", "none"] = "fixed"
    members: list[MemberConfig] = Field(min_length=1)
    mixing: list[list[float]] | None = None
    pool: PoolConfig | None = None

    @model_validator(mode="after")
    def _consistent(self):
        names = [m.name for m in self.members]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise FieldProblem("members", f"two members are named {duplicate!r}")
        if self.mixing is not None and self.pool is not None:
            raise FieldProblem("pool", "give either mixing (W) or pool, not both")
        if self.mixing is None and self.pool is None and len(self.members) > 1:
            raise FieldProblem("mixing", "required with several members (or give pool)")
        if self.mixing is not None:
            _check_mixing(self.mixing, len(self.members))
        for i, member in enumerate(self.members):
            if member.n_initial is not None and self.real != "fresh":
                raise FieldProblem(f"members.{i}.n_initial", "only applies to real: fresh")
            if (member.n_initial or member.n_real) < 1:
                raise FieldProblem(f"members.{i}.n_real", "must be > 0: generation 1 trains on real data only")
            if self.generations > 1 and member.n_synthetic < 1 and self.real == "none":
                raise FieldProblem(f"members.{i}.n_synthetic", "must be > 0 with real: none")
        return self

    def weights(self) -> np.ndarray:
        """W as an array (the identity for a single member without mixing)."""
        if self.mixing is None:
            return np.eye(len(self.members))
        return np.asarray(self.mixing, dtype=np.float64)


def _check_mixing(mixing: list[list[float]], members: int) -> None:
    if len(mixing) != members:
        raise FieldProblem("mixing", f"W has {len(mixing)} rows but there are {members} members")
    for i, row in enumerate(mixing):
        if len(row) != members:
            raise FieldProblem(f"mixing.{i}", f"row has {len(row)} entries but there are {members} members")
        if any(w < 0 for w in row):
            raise FieldProblem(f"mixing.{i}", "weights must be >= 0")
        if abs(sum(row) - 1.0) > ROW_SUM_TOLERANCE:
            raise FieldProblem(f"mixing.{i}", f"row sums to {sum(row):g}, must sum to 1 (shares of member "
                                              f"{i}'s synthetic samples)")


def largest_remainder(weights, total: int, names: list[str]) -> np.ndarray:
    """Integers summing to ``total`` in the proportions ``weights`` (ties broken by name)."""
    exact = np.asarray(weights, dtype=np.float64) * total
    counts = np.floor(exact + 1e-9).astype(np.int64)
    short = int(total - counts.sum())
    order = sorted(range(len(names)), key=lambda j: (-(exact[j] - counts[j]), names[j]))
    for j in order[:max(short, 0)]:
        counts[j] += 1
    return counts


class MixingCounts:
    """How many rows flow between members each generation (pure arithmetic on the config).

    ``counts[i][j]`` = m_ij, member i's rows from member j: W_ij n_synthetic_i rounded by largest
    remainder (ties by name) so each row sums exactly. Member j samples ``produced(j)`` rows a
    generation; consumer i gets the disjoint block at ``offset(i, j)`` (consumers in name order).
    """

    def __init__(self, config: "EcosystemConfig"):
        self.config = config
        self.members = {m.name: m for m in config.members}
        self.names = sorted(self.members)  # name order: what every choice iterates in
        listed = [m.name for m in config.members]
        self.counts = {i: {j: 0 for j in self.names} for i in self.names}
        if config.pool is None:
            w = config.weights()
            for row, i in enumerate(listed):
                taken = largest_remainder(w[row], self.members[i].n_synthetic, listed)
                self.counts[i] = {j: int(taken[col]) for col, j in enumerate(listed)}

    def produced(self, j: str) -> int:
        """Rows member j samples and keeps every generation."""
        if self.config.pool is not None:
            return max(self.members[j].n_synthetic, self.config.pool.publish)
        return max(self.members[j].n_synthetic, sum(self.counts[i][j] for i in self.names))

    def offset(self, i: str, j: str) -> int:
        """Where consumer i's block of member j's samples begins."""
        return sum(self.counts[k][j] for k in self.names if k < i)

    def shares(self) -> np.ndarray:
        """Q in name order: Q_ij = m_ij / (member i's training-set size from generation 2 on)."""
        q = np.zeros((len(self.names), len(self.names)))
        for a, i in enumerate(self.names):
            real = self.members[i].n_real if self.config.real != "none" else 0
            size = real + sum(self.counts[i].values())
            for b, j in enumerate(self.names):
                q[a, b] = self.counts[i][j] / size
        return q


def member_seed(seed: int, member: str) -> int:
    """The seed of one member's run: from the ecosystem seed and the member's *name* (not its
    position), so listing the members in another order changes no member's numbers."""
    tag = int.from_bytes(hashlib.sha256(member.encode()).digest()[:4], "little")
    return int(np.random.SeedSequence([seed, tag]).generate_state(1, np.uint32)[0]) & (2**31 - 1)




@dataclass
class EcoRun:
    """One ecosystem of a sweep, validated: its members as runs (``members``: name -> RunConfig)."""

    name: str
    seed: int
    dataset: dict
    ecosystem: EcosystemConfig
    members: dict[str, RunConfig]
    swept: dict[str, Any] = field(default_factory=dict)
    metrics: MetricsConfig = MetricsConfig()
    resources: ResourcesConfig = ResourcesConfig()

    def identity(self) -> dict:
        """What determines the ecosystem's results (resources do not): every member's resolved run."""
        return {"seed": self.seed, "ecosystem": self.ecosystem.model_dump(mode="json"),
                "members": {n: c.identity() for n, c in sorted(self.members.items())}}

    @cached_property
    def eco_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        slug = ",".join(f"{k}={_slug(v)}" for k, v in self.swept.items())[:80]
        return f"{slug}-{digest}" if slug else digest

    def member_id(self, member: str) -> str:
        """The run id (folder name below ``runs/``) of one member."""
        return f"{self.eco_id}{MEMBER_SEP}{member}"


#: between an ecosystem's id and a member's name in the member's run id
MEMBER_SEP = "--"


@dataclass
class EcoSpec:
    base: dict
    out: str
    runs: list[EcoRun]
    path: str | None = None
