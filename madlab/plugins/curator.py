"""The curator protocol every curation plugin implements.

A curator is a class registered in the ``madlab.curators`` entry-point group (the same door as
generators, see :mod:`madlab.plugins.registry`). Between sampling and publishing, the loop hands it
the candidates a generation's model drew and asks for ``n_keep`` samples to enter later training
sets: it may *select* among the candidates (best-of-K, a verifier, a detector's importance
resampling) or *correct* them (self-correction). The engine, not the curator, draws candidates,
so every curator works with every generator (see :mod:`madlab.engine.curation_stage`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import Field

from madlab.core.samples import Samples
from madlab.plugins.generator import Params


class CuratorParams(Params):
    """Parameters every curator accepts beside its own."""

    #: most candidates drawn per kept sample; a rejecting curator that cannot fill ``n_keep``
    #: within this budget fails the run with its acceptance rate
    max_oversampling: float = Field(20.0, ge=1.0)


@dataclass(frozen=True)
class Curated:
    """What a curator returns for one batch of candidates.

    samples: the kept (or corrected) samples, at most ``n_keep`` of them.
    index: positions of the kept samples among the candidates for a selecting curator (with
        repeats for resampling), None for a correcting one.
    reward_before / reward_after: mean reward (or score) over all candidates and over the kept
        samples, where the curator has one.
    examined: how many leading candidates the kept samples were chosen from (default: all);
        the acceptance rate is ``len(samples) / examined``.
    """

    samples: Samples
    index: np.ndarray | None = None
    reward_before: float | None = None
    reward_after: float | None = None
    examined: int | None = None


class Curator(ABC):
    """Selects or corrects a generation's synthetic samples before they re-enter training.

    Subclasses set ``name``, ``Params`` (a :class:`CuratorParams` subclass), ``data_kinds``
    and, where they may keep fewer samples than asked, ``rejects = True`` (the engine then
    draws more candidates, up to ``max_oversampling`` per kept sample).
    """

    name: ClassVar[str]
    Params: ClassVar[type[CuratorParams]] = CuratorParams
    data_kinds: ClassVar[frozenset[str]] = frozenset({"vector"})
    rejects: ClassVar[bool] = False

    def __init__(self, params: CuratorParams, *, dataset, device: str = "cpu"):
        self.params = params
        self.dataset = dataset
        self.device = device

    @classmethod
    def check(cls, params: CuratorParams, dataset) -> None:
        """Cheap validate-time check against the run's dataset instance; raises
        :class:`madlab.core.errors.ConfigError` naming the key (``loop.curation.<key>: ...``).

        The default checks nothing beyond ``data_kinds`` (which the engine checks itself).
        """

    @classmethod
    def candidates_per_kept(cls, params: CuratorParams) -> float:
        """Candidates drawn per kept sample on the first try (best-of-K: K)."""
        return 1.0

    @abstractmethod
    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        """Keep (at most) ``n_keep`` samples of ``candidates``, deterministic under ``seed``.

        ``real`` is the real data the generation's model was trained on (the corrector's and the
        detector's reference); candidates are float32 in the data's range (images in [-1, 1]).
        """

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
