"""Answers from a results folder, not only curves: collapse profiles, paired comparisons of arms,
and the search for the critical value of a loop setting.

* :func:`collapse_profile` (:mod:`~madlab.analysis.profile`): per arm and metric, rate per
  generation, first crossing of a level, stationary level and flattening, with intervals over seeds;
* :func:`compare` (:mod:`~madlab.analysis.paired`): arms differing in one setting, paired by seed;
* :func:`search_threshold` (:mod:`~madlab.analysis.threshold`): where a stated criterion flips
  along one loop setting, by adaptive bisection over ordinary madlab runs;
* :data:`METRIC_INFO` (:mod:`~madlab.analysis.metric_info`): what each metric means, which
  direction is worse, which collapse definition (Schaeffer et al. 2025) it measures.

Every function returns a tidy pandas frame; the CLI (``madlab profile | compare | threshold``)
and the report print them.
"""
from madlab.analysis.metric_info import COLLAPSE_DEFINITIONS, METRIC_INFO, MetricInfo, metric_info, metric_table
from madlab.analysis.paired import NOT_SEPARATED, compare, paired_interval
from madlab.analysis.profile import collapse_profile

__all__ = ["COLLAPSE_DEFINITIONS", "METRIC_INFO", "MetricInfo", "NOT_SEPARATED", "collapse_profile", "compare",
           "metric_info", "metric_table", "paired_interval"]
