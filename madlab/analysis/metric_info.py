"""What each metric means: definition, range, the direction that means "worse", and which
collapse definition(s) of Schaeffer et al. it measures. ONE table (:data:`METRIC_INFO`).

Schaeffer, Kazdan, Arulandu & Koyejo, *Position: Model Collapse Does Not Mean What You Think*
(arXiv 2503.03150) count eight incompatible definitions of "model collapse" in the literature
and ask every study to state which one it measures. :data:`COLLAPSE_DEFINITIONS` names them
(our short keys, paraphrasing the paper's section on definitions); every metric row of
:data:`METRIC_INFO` lists the keys it bears on. Two of the eight are properties of a curve,
not of one metric: ``catastrophic-risk`` (a population risk that keeps growing without bound)
is read off a profile's rate and flattening (:mod:`madlab.analysis.profile`), and
``scaling-law-change`` needs a sweep over the data size, so no metric carries them alone.

This table is meant to be folded into the metric registry (issue 27) as it is: one row per
metric, plain data, no behaviour.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

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
_FEATURE = ("vector", "image", "tokens")

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
                            (0, 1), "lower", ("mode-entanglement",), _FEATURE),
    "recall": MetricInfo("share of real samples inside the generated k-NN manifold: coverage of the real support",
                         (0, 1), "lower", ("variance-collapse", "mode-loss", "tail-loss"), _FEATURE),
    "density": MetricInfo("mean count of real k-NN balls holding a generated sample, / k (Naeem et al.)", (0, INF),
                          "lower", ("mode-entanglement",), _FEATURE),
    "coverage": MetricInfo("share of real samples whose k-NN ball holds a generated sample (Naeem et al.)", (0, 1),
                           "lower", ("mode-loss", "tail-loss"), _FEATURE),
    "vendi": MetricInfo("Vendi score: exp of the entropy of the similarity kernel's eigenvalues, an effective "
                        "number of distinct samples", (1, INF), "lower", ("variance-collapse",), _FEATURE, True),
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


def metric_table():
    """The table as a tidy frame (one row per metric): for docs and ``madlab metrics``."""
    rows = [{"metric": name, "definition": i.definition, "range": f"[{i.range[0]:g}, {i.range[1]:g}]",
             "worse": i.worse + (" (and away from real data either way)" if i.two_sided else ""), "collapse": ", ".join(i.collapse), "kinds": ", ".join(i.kinds),
             "rate": "ratio per generation" if i.multiplicative else "slope per generation"}
            for name, i in METRIC_INFO.items()]
    return pd.DataFrame(rows)


def metrics_markdown() -> str:
    """docs/metrics.md: the table and the definitions as Markdown (``madlab metrics --markdown``)."""
    lines = ["# Metrics: meaning, direction, collapse definition", "",
             "Generated from `madlab.analysis.METRIC_INFO` by `madlab metrics --markdown > docs/metrics.md`;",
             "`tests/test_analysis_profile.py` checks that this file matches the table.", "",
             "| metric | worse | range | rate | collapse definitions | kinds | definition |", "|---|---|---|---|---|---|---|"]
    for row in metric_table().itertuples(index=False):
        lines.append(f"| `{row.metric}` | {row.worse} | {row.range} | {row.rate} | {row.collapse} | {row.kinds} | "
                     f"{row.definition} |")
    lines += ["", "## Collapse definitions (Schaeffer et al. 2025, arXiv 2503.03150; keys are madlab's)", ""]
    lines += [f"- `{key}`: {meaning}" for key, meaning in COLLAPSE_DEFINITIONS.items()]
    return "\n".join(lines) + "\n"
