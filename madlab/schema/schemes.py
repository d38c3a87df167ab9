"""Loop schemes: every rule about the five schemes lives here.

* their names, in MAD's order (:data:`SCHEMES`, also the order the report shows them in:
  :func:`display_order`);
* the training-set sizes of generation 1 and of later generations (:func:`first_size`,
  :func:`later_size`), which the validator compares with a generator's ``min_train_size``;
* how many earlier generations' samples a loop must keep (:func:`history_needed`), and whether a
  generation's training set is the previous one plus the newest samples (:func:`pooled`);
* the plan: which samples make up the training set of generation t.

A plan is pure data computed from the loop config and the generation number alone: the real
rows to draw (dataset offsets) and the synthetic rows to take from earlier generations' sample
sets. The loop materialises it; tests check it directly. Generation 1 always trains on real
data only. Offsets are laid out so that fresh real draws never overlap: rows [0, first_size)
are generation 1's, then n_real new rows per later generation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: the schemes, in MAD's order (the report's order too)
SCHEMES = ("fully-synthetic", "fixed-real", "fresh-real", "accumulate", "accumulate-subsample")
Scheme = Literal["fully-synthetic", "fixed-real", "fresh-real", "accumulate", "accumulate-subsample"]


def first_size(loop) -> int:
    """Training-set size at generation 1 (real data only) of a ``LoopConfig``."""
    if loop.scheme == "fresh-real" and loop.n_initial is not None:
        return loop.n_initial
    return loop.n_real


def later_size(loop) -> int:
    """Training-set size of every generation after the first."""
    return {
        "fully-synthetic": loop.n_synthetic,
        "fixed-real": loop.n_real + loop.n_synthetic,
        "fresh-real": loop.n_real + loop.n_synthetic,
        "accumulate": loop.n_real + loop.n_synthetic,
        "accumulate-subsample": loop.train_size or loop.n_real,
    }[loop.scheme]


def history_needed(loop) -> int:
    """How many of the latest generations' sample sets the loop must keep to plan the next one."""
    if loop.scheme in ("accumulate", "accumulate-subsample") or loop.accumulate_synthetic:
        return loop.generations
    return loop.memory


def pool_size(loop) -> int:
    """Rows of the whole pool after the last generation: the fixed real rows and every synthetic set."""
    return loop.n_real + (loop.generations - 1) * loop.n_synthetic


def pooled(loop) -> bool:
    """True when generation t's training set is generation t-1's plus its newest samples."""
    return loop.scheme == "accumulate" or (loop.scheme == "fixed-real" and loop.accumulate_synthetic)


def display_order(values: list, col: str) -> list:
    """Sweep values in display order: λ descending, schemes as MAD, numbers ascending, else by name."""
    if col == "scheme":
        return sorted(values, key=lambda v: (SCHEMES.index(v) if v in SCHEMES else 99, str(v)))
    try:
        return sorted(values, key=float, reverse=(col == "bias"))
    except (TypeError, ValueError):
        return sorted(values, key=str)


@dataclass(frozen=True)
class Part:
    """Rows of one source: ``source`` is "real" or the generation that sampled them.

    Real rows are dataset rows [offset, offset + n); synthetic rows are the first n rows of
    that generation's sample set. ``select`` (optional) keeps only those positions of the part.
    """

    source: str | int
    n: int
    offset: int = 0
    select: tuple[int, ...] | None = None

    @property
    def count(self) -> int:
        return self.n if self.select is None else len(self.select)


@dataclass(frozen=True)
class Plan:
    generation: int
    parts: tuple[Part, ...]

    @property
    def n_real(self) -> int:
        return sum(p.count for p in self.parts if p.source == "real")

    @property
    def n_synthetic(self) -> int:
        return sum(p.count for p in self.parts if p.source != "real")

    @property
    def synthetic_from(self) -> dict[int, int]:
        """Generation -> number of its samples in the training set."""
        return {p.source: p.count for p in self.parts if p.source != "real" and p.count}

    def provenance(self) -> dict:
        return {"n_train_real": self.n_real, "n_train_synthetic": self.n_synthetic,
                "synthetic_from": ",".join(str(g) for g in self.synthetic_from)}


def plan(loop, t: int, subsample_seed: int = 0) -> Plan:
    """The training-set plan of generation ``t`` (1-based) of a ``LoopConfig``."""
    if not 1 <= t <= loop.generations:
        raise ValueError(f"generation {t} outside 1..{loop.generations}")
    first = Part("real", loop.first_size, 0)
    if t == 1:
        return Plan(1, (first,))
    previous = Part(t - 1, loop.n_synthetic)
    all_synthetic = tuple(Part(g, loop.n_synthetic) for g in range(1, t))
    fixed_real = Part("real", loop.n_real, 0)
    scheme = loop.scheme
    if scheme == "fully-synthetic":
        parts = (previous,)
    elif scheme == "fixed-real":
        if loop.accumulate_synthetic == "truncated":
            parts = (fixed_real,) + _truncated_parts(loop.n_synthetic, t)
        else:
            parts = (fixed_real,) + (all_synthetic if loop.accumulate_synthetic else (previous,))
    elif scheme == "fresh-real":
        fresh = Part("real", loop.n_real, loop.first_size + (t - 2) * loop.n_real)
        parts = (fresh,) + _memory_parts(loop, t)
    elif scheme == "accumulate":
        parts = (fixed_real,) + all_synthetic
    elif scheme == "accumulate-subsample":
        parts = _subsample((fixed_real,) + all_synthetic, loop.train_size or loop.n_real, subsample_seed)
    else:  # pragma: no cover - the config validator admits only the schemes above
        raise ValueError(f"unknown scheme {scheme!r}")
    return Plan(t, tuple(p for p in parts if p.count))


def _truncated_parts(n: int, t: int) -> tuple[Part, ...]:
    """Every earlier synthetic set, set g of G = t - 1 cut to its first floor(g n / G) rows.

    Gillman et al.'s Gaussian toy (``exp_scripts/gaussian_toy_example.py``, both versions) keeps
    ``int((i + 1) / G * n)`` rows of its i-th set (0-based): the newest set whole, older ones
    linearly fewer. The exact integer floor used here equals that float product for n = 25 (the
    toy's size) at every G up to 1000; for some other n the float product rounds one row lower.
    """
    sets = t - 1
    return tuple(Part(g, g * n // sets) for g in range(1, t))


def _memory_parts(loop, t: int) -> tuple[Part, ...]:
    """n_synthetic samples spread evenly over the last K models (the most recent get the remainder)."""
    sources = list(range(max(1, t - loop.memory), t))
    base, extra = divmod(loop.n_synthetic, len(sources))
    counts = [base + (1 if i >= len(sources) - extra else 0) for i in range(len(sources))]
    return tuple(Part(g, c) for g, c in zip(sources, counts))


def _subsample(parts: tuple[Part, ...], size: int, seed: int) -> tuple[Part, ...]:
    """A uniform random subset of ``size`` rows of the pooled parts (all of them if fewer)."""
    total = sum(p.n for p in parts)
    if total <= size:
        return parts
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=size, replace=False))
    bounds = np.cumsum([0] + [p.n for p in parts])
    out = []
    for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
        rows = chosen[(chosen >= lo) & (chosen < hi)] - lo
        out.append(Part(part.source, part.n, part.offset, tuple(int(r) for r in rows)))
    return tuple(out)
