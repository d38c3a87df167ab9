"""The opt-in hook: a generator family that fits and samples many runs at once.

A generator class opts into vectorised execution by naming a :class:`BatchedGenerator`
subclass in its ``batched`` class attribute, as a class or a lazy ``"module:Name"`` path
(``GaussianGenerator.batched = "madlab_generators.gaussian_batch:BatchedGaussian"``).
The engine (:mod:`madlab.engine.batched.loop`) then advances every run of a batch together: one call
fits B training sets stacked as a (B, N, *shape) array, one call samples B runs, each from its
own seed. A cheap generator that does not opt in still runs in batches, through
:class:`PerRunGenerators` (its own ``fit``/``sample`` called run by run; metrics and storage are
batched), so opting in only ever buys speed.

The contract a batched family must keep, which the equality tests check:

* **Same numbers.** Slot i of ``fit``/``sample`` gives exactly what the per-run generator gives
  for run i's training set and seed (bit for bit where the arithmetic allows it; sufficient-
  statistic fits are exact up to rounding, see :class:`SufficientStatistics`).
* **No cross-talk.** Slot i's result depends on slot i's inputs only, never on the batch size
  or on the other slots (so a run's numbers do not depend on what it was batched with).
* ``state_dicts()`` returns, per slot, what the per-run generator's ``state_dict()`` would.

Every method takes ``slots``: the indices (into the batch) of the runs being advanced, because
a resumed or partly failed batch advances only some of its runs at a given generation.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from madlab.core.samples import Samples


class SufficientStatistics(ABC):
    """Statistics a fit needs, that combine exactly when two training sets are pooled.

    Lets the accumulate schemes update generation t's pooled fit from generation t-1's
    statistics and the newest synthetic set instead of refitting on the whole pool.
    """

    @abstractmethod
    def take(self, slots: np.ndarray) -> "SufficientStatistics":
        """The statistics of those slots only."""

    @abstractmethod
    def put(self, slots: np.ndarray, other: "SufficientStatistics") -> None:
        """Overwrite those slots with ``other`` (in place)."""

    @abstractmethod
    def combine(self, other: "SufficientStatistics") -> "SufficientStatistics":
        """Statistics of the union of the two training sets (slot by slot)."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Stacked arrays (for checkpoints)."""


class BatchedGenerator(ABC):
    """B runs of one generator family, sharing hyper-parameters and data shape."""

    #: the ``Generator`` subclass whose numbers this family reproduces
    generator_cls: ClassVar[type]
    #: True where ``statistics``/``fit_statistics`` are implemented (exact pooled fits)
    has_statistics: ClassVar[bool] = False

    def __init__(self, params, *, data_shape: tuple[int, ...], size: int, num_classes: int | None = None):
        self.params = params
        self.data_shape = tuple(data_shape)
        self.size = size
        self.num_classes = num_classes

    @abstractmethod
    def fit(self, data: np.ndarray, slots: np.ndarray, seeds: list[int], warm: list[dict] | None = None) -> None:
        """Fit slot ``slots[j]`` on ``data[j]`` ((len(slots), N, *shape)) with seed ``seeds[j]``.

        ``warm`` holds each slot's previous state when the loop warm-starts."""

    @abstractmethod
    def sample(self, n: int, slots: np.ndarray, bias: np.ndarray, seeds: list[int]) -> np.ndarray:
        """(len(slots), n, *shape) samples; row j from slot ``slots[j]`` with its own seed."""

    @abstractmethod
    def state_dicts(self, slots: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Per slot, what the per-run generator's ``state_dict()`` returns."""

    @abstractmethod
    def load_state_dicts(self, slots: np.ndarray, states: list[dict[str, np.ndarray]]) -> None:
        """Restore what :meth:`state_dicts` returned (resume)."""

    def model_metrics(self, dataset, slots: np.ndarray) -> dict[str, np.ndarray]:
        """Stacked ``Generator.model_metrics``; none by default."""
        return {}

    def sampling_gaussian(self, slots: np.ndarray, bias: np.ndarray):
        """Stacked (means (A, d), covariances (A, d, d)) of the sampling distributions, or None."""
        return None

    # ------------------------------------------------------------------ sufficient statistics
    def statistics(self, data: np.ndarray) -> SufficientStatistics:
        raise NotImplementedError

    def empty_statistics(self) -> SufficientStatistics:
        raise NotImplementedError

    def fit_statistics(self, stats: SufficientStatistics, slots: np.ndarray) -> None:
        raise NotImplementedError


class PerRunGenerators(BatchedGenerator):
    """Fallback for a cheap generator that has no batched form: its own methods, run by run.

    Exactly the per-run Loop's arithmetic (a fresh instance per generation, the previous state
    loaded when warm-starting), so only metrics and storage are vectorised.
    """

    def __init__(self, generator_cls, params, *, data_shape, size, num_classes=None):
        super().__init__(params, data_shape=data_shape, size=size, num_classes=num_classes)
        self.generator_cls = generator_cls
        self.models: list = [None] * size

    def _fresh(self):
        return self.generator_cls(self.params, data_shape=self.data_shape, num_classes=self.num_classes)

    def fit(self, data, slots, seeds, warm=None):
        for j, (slot, seed) in enumerate(zip(slots, seeds)):
            model = self._fresh()
            if warm is not None and warm[j] is not None:
                model.load_state_dict(warm[j])
            model.fit(Samples(data[j]), seed=seed)
            self.models[slot] = model

    def sample(self, n, slots, bias, seeds):
        return np.stack([np.asarray(self.models[s].sample(n, bias=float(b), seed=seed).x)
                         for s, b, seed in zip(slots, bias, seeds)])

    def state_dicts(self, slots):
        return [self.models[s].state_dict() for s in slots]

    def load_state_dicts(self, slots, states):
        for s, state in zip(slots, states):
            model = self._fresh()
            model.load_state_dict(state)
            self.models[s] = model

    def model_metrics(self, dataset, slots):
        rows = [self.models[s].model_metrics(dataset) for s in slots]
        names = sorted(set().union(*rows)) if rows else []
        return {k: np.array([r.get(k, np.nan) for r in rows], dtype=np.float64) for k in names}

    def sampling_gaussian(self, slots, bias):
        found = [self.models[s].sampling_gaussian(float(b)) for s, b in zip(slots, bias)]
        if not found or any(f is None for f in found):
            return None
        return np.stack([f[0] for f in found]), np.stack([f[1] for f in found])


def batched_family(generator_cls) -> type[BatchedGenerator] | None:
    """The batched family a generator class opted into, if any.

    ``batched`` is the class or, so that importing the generator does not import this
    machinery, its ``"module:Name"`` path."""
    family = getattr(generator_cls, "batched", None)
    if family is None:
        return None
    if isinstance(family, str):

        module, _, name = family.partition(":")
        family = getattr(importlib.import_module(module), name)
    if not (isinstance(family, type) and issubclass(family, BatchedGenerator)):
        raise TypeError(f"{generator_cls.__name__}.batched must be a BatchedGenerator subclass, got {family!r}")
    return family
