"""What each metric means, as a table and as docs/metrics.md (``madlab metrics``).

The rows themselves (:data:`METRIC_INFO`, :data:`COLLAPSE_DEFINITIONS`) live in the metric registry,
:mod:`madlab.metrics.registry`, beside each metric's name, kinds and report role; this module presents them.
"""
from __future__ import annotations

import pandas as pd

from madlab.metrics.registry import COLLAPSE_DEFINITIONS, METRIC_INFO, MetricInfo, metric_info, worse_direction


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


__all__ = ["COLLAPSE_DEFINITIONS", "METRIC_INFO", "MetricInfo", "metric_info", "metric_table", "metrics_markdown",
           "worse_direction"]
