"""The dataset protocol: deterministic, resumable draws of real samples.

A dataset hands out rows ``[offset, offset + n)`` of a stream fixed by ``seed``. Disjoint
offset ranges are disjoint (finite datasets) or independent (analytic ones) samples, which is
what ``fresh-real`` needs, and the same call always returns the same rows, which is what
bit-for-bit resume needs. No hidden state: the loop scheme computes offsets itself.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from madlab.protocol import Params
from madlab.samples import Samples


class Dataset(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    kind: ClassVar[str] = "vector"  # "vector", "image" or "tokens"
    #: names :meth:`extra_metrics` can return (``metrics.names`` is checked against them)
    extra_metric_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Params):
        self.params = params

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (d,) or (C, H, W)."""

    @property
    def num_classes(self) -> int | None:
        return None

    @property
    def size(self) -> int | None:
        """Number of distinct training samples, None when unlimited (analytic)."""
        return None

    @abstractmethod
    def draw(self, n: int, *, seed: int, offset: int = 0) -> Samples:
        """Rows [offset, offset + n) of the stream fixed by ``seed``."""

    def eval_set(self, n: int, *, seed: int) -> Samples:
        """A held-out real reference set for metrics, independent of every training draw."""
        return self.draw(n, seed=seed, offset=_EVAL_OFFSET)

    def true_gaussian(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, covariance) when the real distribution is exactly Gaussian."""
        return None

    #: True when :meth:`log_density` is the exact log-density of the real distribution
    knows_density: ClassVar[bool] = False

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log p(x) of the real distribution per row of ``x`` (n, d); only where ``knows_density``."""
        raise NotImplementedError(f"dataset {self.name!r} does not know its density")

    def check_run(self, run) -> None:
        """Validate-time check of one run against this dataset (raise a MadlabError naming the key)."""

    def extra_metrics(self, fake: Samples) -> dict[str, float]:
        """Dataset-specific quality figures of generated samples (e.g. modes covered)."""
        return {}


#: Offset reserved for the evaluation stream of analytic datasets (never reached by training draws).
_EVAL_OFFSET = 2**62
