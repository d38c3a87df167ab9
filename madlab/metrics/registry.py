"""Every metric madlab reports, in one table: its name, which data kinds' evaluators compute it, and
how the report shows it.

The evaluators (:mod:`madlab.metrics.lowdim`, :mod:`~madlab.metrics.images`, :mod:`~madlab.metrics.text`),
the batched engine (:mod:`madlab.engine.batched.metrics`), the validator (``metrics.names``) and the
report (headline order, [0, 1] axes) all read their metric lists from here. Adding a metric:

1. compute it in one file under ``madlab/metrics/`` (a function of the real reference and the samples);
2. register it below with :func:`register_metric` (``kinds`` it is computed for, ``bounded``,
   ``headline``), and call it from the evaluator of those kinds;
3. for the ``vector`` kind, set ``batched=True`` once :class:`madlab.engine.batched.metrics.BatchedLowDimEvaluator`
   computes it for a stack of runs (tests/test_batched.py compares the two); a vector metric
   without a batched form makes its runs run one by one.

Metrics a generator or dataset computes itself (``Generator.model_metric_names``,
``Dataset.extra_metric_names``) are registered here only for how the report shows them (no ``kinds``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    #: data kinds whose evaluator computes it by default (``vector``, ``image``, ``tokens``)
    kinds: tuple[str, ...] = ()
    #: data kinds whose evaluator computes it only when ``metrics.names`` lists it
    on_request: tuple[str, ...] = ()
    #: values in [0, 1]: the report fixes its axes to that range
    bounded: bool = False
    #: position in the report's headline of vector and image runs (None: not a headline metric)
    headline: int | None = None
    #: position in the headline of text runs
    text_headline: int | None = None
    #: drawn among the headline panels (False: it has a panel of its own, e.g. the theory panel)
    panel: bool = True
    #: the batched engine computes it too (vector kind)
    batched: bool = False


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the table (its position orders the per-kind lists); a name is registered once."""
    if metric.name in METRICS and METRICS[metric.name] != metric:
        raise ValueError(f"metric {metric.name!r} registered twice")
    METRICS[metric.name] = metric
    return metric


def metric_names(kind: str, *, on_request: bool = False) -> tuple[str, ...]:
    """The metrics the evaluator of data ``kind`` computes by default (``on_request``: those it computes
    only when ``metrics.names`` asks), in registration order."""
    return tuple(m.name for m in METRICS.values() if kind in (m.on_request if on_request else m.kinds))


def batched_names() -> tuple[str, ...]:
    """The vector metrics the batched engine computes."""
    return tuple(m.name for m in METRICS.values() if m.batched)


def headline(*, text: bool = False, panels: bool = False) -> tuple[str, ...]:
    """The report's headline metrics in order (``text``: of text runs; ``panels``: those drawn as panels)."""
    rank = (lambda m: m.text_headline) if text else (lambda m: m.headline)
    chosen = [m for m in METRICS.values() if rank(m) is not None and (m.panel or not panels or text)]
    return tuple(m.name for m in sorted(chosen, key=rank))


def bounded() -> frozenset[str]:
    """Metrics whose values lie in [0, 1]."""
    return frozenset(m.name for m in METRICS.values() if m.bounded)


_FEATURE = ("image",)
_TEXT_LM = ("tokens",)
_MEMORISATION = ("vector", "image", "tokens")
#: the memorisation metrics (madlab.metrics.memorisation: ``_heldout`` against held-out real data)
MEMORISATION_NAMES = ("authenticity", "novelty", "novelty_q10", "novelty_q50", "novelty_q90", "copy_rate",
                       "authenticity_heldout", "novelty_heldout", "copy_rate_heldout", "train_entropy")
for _metric in (
    # feature-space and k-NN metrics (madlab.metrics.feature, knn, vendi; lowdim on raw coordinates)
    Metric("fid", kinds=_FEATURE, on_request=_TEXT_LM, headline=0, text_headline=2),
    Metric("kid", kinds=_FEATURE, on_request=_TEXT_LM),
    Metric("w2", kinds=("vector",), headline=1, batched=True),
    Metric("precision", kinds=("vector",) + _FEATURE, on_request=_TEXT_LM, bounded=True, headline=2,
           text_headline=3, batched=True),
    Metric("recall", kinds=("vector",) + _FEATURE, on_request=_TEXT_LM, bounded=True, headline=3, text_headline=4,
           batched=True),
    Metric("density", kinds=("vector",) + _FEATURE, on_request=_TEXT_LM, batched=True),
    Metric("coverage", kinds=("vector",) + _FEATURE, on_request=_TEXT_LM, bounded=True, headline=4,
           text_headline=5, batched=True),
    Metric("vendi", kinds=("vector",) + _FEATURE, on_request=_TEXT_LM, text_headline=6, batched=True),
    # memorisation and novelty (madlab.metrics.memorisation), against the generation's training set and
    # held-out real data: computed when metrics.names lists them (they need the training set's k-NN)
    *(Metric(name, on_request=_MEMORISATION, bounded=name.startswith(("authenticity", "copy_rate")), batched=True)
      for name in MEMORISATION_NAMES),
    # text metrics (madlab.metrics.text)
    Metric("perplexity", kinds=("tokens",), text_headline=0),
    Metric("distinct_1", kinds=("tokens",)),
    Metric("distinct_2", kinds=("tokens",)),
    Metric("distinct_3", kinds=("tokens",)),
    Metric("distinct_4", kinds=("tokens",), text_headline=7),
    Metric("self_bleu", kinds=("tokens",), text_headline=8),
    Metric("unigram_entropy", kinds=("tokens",)),
    Metric("vocab_used", kinds=("tokens",)),
    Metric("tail_mass", kinds=("tokens",)),
    Metric("mean_length", kinds=("tokens",)),
    Metric("ref_perplexity", on_request=_TEXT_LM, text_headline=1),
    # computed by generators or datasets themselves: registered for the report only
    Metric("modes", headline=5),
    Metric("hq_fraction", bounded=True, headline=6),
    Metric("trace_cov", headline=7, panel=False),
):
    register_metric(_metric)
