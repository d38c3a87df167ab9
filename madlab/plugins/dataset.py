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

from madlab.core.samples import Samples
from madlab.plugins.generator import Params


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

    def eval_source(self) -> str:
        """Where :meth:`eval_set` takes the metrics' reference set from, in words (every run records it in
        its metadata as ``reference``; the report shows it): analytic sources draw fresh samples."""
        return "fresh draws"

    def training_pool_eval_set(self, n: int, *, seed: int) -> Samples:
        """The reference set drawn from the training pool itself (``metrics.reference: training-pool``: MAD's
        protocol, which scores generators against the data they train on). Analytic sources have no pool
        to reuse: :meth:`eval_set`'s fresh draws."""
        return self.eval_set(n, seed=seed)

    def real_vs_real_set(self, n: int, *, seed: int, reference_seed: int) -> tuple[Samples, int]:
        """The report's real-vs-real sample: ``n`` real samples to score against the reference set
        ``eval_set(n, seed=reference_seed)`` exactly as a generation's samples are (what a perfect
        model scores). Returns (samples, how many of them are also in that reference set).

        An unlimited source draws a second, independent sample (stream ``seed``); finite datasets
        take real samples the reference set does not hold (:func:`disjoint_real_sample`)."""
        return self.eval_set(n, seed=seed), 0

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


def disjoint_real_sample(n: int, eval_order: np.ndarray, eval_rows, train_order: np.ndarray | None = None,
                         train_rows=None) -> tuple[Samples, int]:
    """``n`` real samples apart from a finite dataset's reference set, and how many it had to share.

    ``eval_order`` is the evaluation pool in the order whose first ``n`` rows are the reference set
    (``eval_rows(index) -> Samples``). The sample takes, in order of preference, the pool's next ``n``
    rows; then, where the pool is a split apart from the training pool (a test split, a held-out
    split), rows of the training pool in ``train_order`` (real data of the same distribution that the
    reference never holds); and only when both run out, the fewest rows of the reference set itself.
    Two independent draws from one small pool would share many rows (two draws of 200 from 324 held-out
    documents share ~123), which makes a real-vs-real level optimistic."""
    parts, short = [], n
    rest = np.asarray(eval_order)[n:2 * n]
    if len(rest):
        parts.append(eval_rows(np.sort(rest)))
        short -= len(rest)
    if short and train_order is not None and len(train_order):
        take = np.asarray(train_order)[:short]
        parts.append(train_rows(np.sort(take)))
        short -= len(take)
    if short:
        parts.append(eval_rows(np.sort(np.asarray(eval_order)[:short])))
    return Samples.concat(parts), short
