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

What each metric *means* (definition, range, the direction that means worse, the collapse definitions
of Schaeffer et al. it bears on) is the second half of this module, :data:`METRIC_INFO`, one row per
metric (``Metric.info``); the analyses (:mod:`madlab.analysis`) read the worse direction from it.
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

    @property
    def info(self) -> "MetricInfo | None":
        """What the metric means (:data:`METRIC_INFO`), or None where the table does not describe it."""
        return METRIC_INFO.get(self.name)


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
    Metric("mean_shift"),
    Metric("tv_truth"),
    Metric("kl_truth"),
):
    register_metric(_metric)


# ----------------------------------------------------------------------------- what each metric means

#: key -> what the definition says collapse is (Schaeffer et al. 2025, §2, paraphrased)
COLLAPSE_DEFINITIONS: dict[str, str] = {
    "risk-increase": "any increase of the population risk (test loss, distance to the real distribution) "
                     "over generations",
    "catastrophic-risk": "the population risk grows without bound (diverges) over generations",
    "variance-collapse": "the model's variance / diversity shrinks towards a point mass",
    "tail-loss": "the tails (rare events) of the real distribution disappear first",
    "mode-loss": "modes / support of the real distribution are lost",
    "mode-entanglement": "modes blur into each other: samples fall between or off the real modes (quality loss, "
                         "hallucination)",
    "scaling-law-change": "the error's scaling law in the amount of data changes (needs a sweep over data size)",
    "real-performance": "the model's performance on real (held-out) data degrades",
}


@dataclass(frozen=True)
class MetricInfo:
    definition: str
    range: tuple[float, float]          # (low, high); inf where unbounded
    worse: str                          # "higher" or "lower": the direction that means worse
    collapse: tuple[str, ...]           # keys of COLLAPSE_DEFINITIONS
    kinds: tuple[str, ...]              # data kinds that compute it: vector, image, tokens
    multiplicative: bool = False        # a rate is a ratio per generation (log scale), not a slope
    two_sided: bool = False             # moving away from real data's level either way is worse: ``worse``
                                        # gives the usual direction, and no arm is called better

    @property
    def sign(self) -> int:
        """+1 when a larger value is worse, -1 when a smaller one is."""
        return 1 if self.worse == "higher" else -1


INF = float("inf")
_ALL_KINDS = ("vector", "image", "tokens")

#: metric name -> its meaning; the profile, the paired comparisons and the threshold search read
#: the worse direction and the rate's scale from here
METRIC_INFO: dict[str, MetricInfo] = {
    "w2": MetricInfo("Wasserstein-2 distance between the generated and a real reference sample (closed form "
                     "between Gaussians)", (0, INF), "higher", ("risk-increase", "catastrophic-risk"), ("vector",)),
    "fid": MetricInfo("Fréchet distance between Gaussian fits of generated and real features", (0, INF), "higher",
                      ("risk-increase", "catastrophic-risk"), ("image", "tokens")),
    "kid": MetricInfo("kernel inception distance (unbiased MMD², cubic kernel) on features", (-INF, INF), "higher",
                      ("risk-increase",), ("image", "tokens")),
    "precision": MetricInfo("share of generated samples inside the real k-NN manifold (Kynkäänniemi et al.): quality",
                            (0, 1), "lower", ("mode-entanglement",), _ALL_KINDS),
    "recall": MetricInfo("share of real samples inside the generated k-NN manifold: coverage of the real support",
                         (0, 1), "lower", ("variance-collapse", "mode-loss", "tail-loss"), _ALL_KINDS),
    "density": MetricInfo("mean count of real k-NN balls holding a generated sample, / k (Naeem et al.)", (0, INF),
                          "lower", ("mode-entanglement",), _ALL_KINDS),
    "coverage": MetricInfo("share of real samples whose k-NN ball holds a generated sample (Naeem et al.)", (0, 1),
                           "lower", ("mode-loss", "tail-loss"), _ALL_KINDS),
    "vendi": MetricInfo("Vendi score: exp of the entropy of the similarity kernel's eigenvalues, an effective "
                        "number of distinct samples", (1, INF), "lower", ("variance-collapse",), _ALL_KINDS, True),
    "trace_cov": MetricInfo("trace of the fitted Gaussian's covariance (real data: the dimension)", (0, INF), "lower",
                            ("variance-collapse",), ("vector",), True),
    "mean_shift": MetricInfo("norm of the fitted mean minus the real mean", (0, INF), "higher", ("risk-increase",),
                             ("vector",)),
    "modes": MetricInfo("modes of the 25-mode grid covered by >= 1 eval sample within 3 std (saturates at 25)",
                        (0, 25), "lower", ("mode-loss",), ("vector",)),
    "hq_fraction": MetricInfo("share of eval samples within 3 std of some mode: quality", (0, 1), "lower",
                              ("mode-entanglement",), ("vector",)),
    "perplexity": MetricInfo("perplexity of the generation's model on held-out real text", (1, INF), "higher",
                             ("real-performance", "risk-increase", "catastrophic-risk"), ("tokens",), True),
    "ref_perplexity": MetricInfo("perplexity of the generated text under the reference text-lm (quality side; "
                                 "too low is over-sharpened)", (1, INF), "higher", ("mode-entanglement",),
                                 ("tokens",), True, two_sided=True),
    "self_bleu": MetricInfo("mean sentence BLEU-4 of each generated document against the others", (0, 1), "higher",
                            ("variance-collapse",), ("tokens",)),
    "unigram_entropy": MetricInfo("entropy of the generated unigram distribution (nats)", (0, INF), "lower",
                                  ("variance-collapse", "tail-loss"), ("tokens",)),
    "vocab_used": MetricInfo("distinct token types in the generated documents", (0, INF), "lower",
                             ("variance-collapse", "tail-loss"), ("tokens",)),
    "tail_mass": MetricInfo("generated share of the real set's rare tokens (real text ≈ 0.1)", (0, 1), "lower",
                            ("tail-loss",), ("tokens",)),
    "mean_length": MetricInfo("mean generated document length (tokens)", (0, INF), "lower", (), ("tokens",),
                              two_sided=True),
    "tv_truth": MetricInfo("total variation between the model and the true source (synthetic sources)", (0, 1),
                           "higher", ("risk-increase",), ("tokens",)),
    "kl_truth": MetricInfo("KL divergence from the true source to the model (synthetic sources)", (0, INF), "higher",
                           ("risk-increase", "catastrophic-risk"), ("tokens",)),
    **{f"distinct_{n}": MetricInfo(f"distinct {n}-grams / all {n}-grams of the generated documents", (0, 1), "lower",
                                   ("variance-collapse",), ("tokens",)) for n in range(1, 5)},
}


def metric_info(metric: str) -> MetricInfo | None:
    """The row of ``metric``, or None for a metric the table does not describe (curation bookkeeping,
    a plugin's own metric): analyses then need the worse direction stated."""
    return METRIC_INFO.get(metric)


def worse_direction(metric: str, override: str | None = None) -> str:
    """``override`` if given ("higher"/"lower"), else the table's; a metric it lacks raises ValueError."""
    if override is not None:
        if override not in ("higher", "lower"):
            raise ValueError(f"worse direction must be 'higher' or 'lower', not {override!r}")
        return override
    info = metric_info(metric)
    if info is None:
        raise ValueError(f"metric {metric!r}: not in madlab.analysis.METRIC_INFO; state which direction is worse")
    return info.worse
