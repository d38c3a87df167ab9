"""The threshold search's figure: the criterion against the setting, with the threshold and its interval.

Each probe is drawn at its setting value: the mean per-seed criterion with the one-sided bounds its
decision used, coloured by the decision; the criterion's bound (0) is the dashed line, the answer's
interval the shaded band and its estimate the vertical line."""
from __future__ import annotations

import io
import math
from pathlib import Path

from madlab.core.files import atomic_write_bytes
from madlab.report.plots import DPI, pyplot

COLOURS = {"pass": "tab:green", "fail": "tab:red", "uncertain": "tab:grey"}


def threshold_figure(result, stem: Path) -> list[str]:
    """Write ``stem``.png and .pdf for a :class:`madlab.analysis.threshold.Threshold`; returns the paths."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    probes = result.probes.sort_values("value")
    for decision, rows in probes.groupby("decision"):
        low = (rows["criterion_mean"] - rows["bound_low"]).clip(lower=0)
        high = (rows["bound_high"] - rows["criterion_mean"]).clip(lower=0)
        ax.errorbar(rows["value"], rows["criterion_mean"], yerr=[low, high], fmt="o", capsize=3,
                    color=COLOURS.get(decision, "black"), label=f"{decision} ({len(rows)})")
    ax.axhline(0, color="black", linestyle="--", linewidth=1)
    if math.isfinite(result.low) and math.isfinite(result.high):
        ax.axvspan(result.low, result.high, color="tab:blue", alpha=0.15,
                   label=f"{result.confidence:.0%} interval [{result.low:.3g}, {result.high:.3g}]")
        ax.axvline(result.estimate, color="tab:blue", linewidth=1.2, label=f"estimate {result.estimate:.3g}")
    ax.set_xlabel(result.setting)
    ax.set_ylabel("criterion (≤ 0: passes)")
    ax.set_title(f"{result.setting}: {result.status}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.text(0.01, -0.02, result.criterion, fontsize=7, ha="left", va="top", wrap=True)
    paths = []
    for ext, kwargs in (("png", {"dpi": DPI}), ("pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches="tight", **kwargs)
        path = Path(f"{stem}.{ext}")
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(str(path))
    plt.close(fig)
    return paths
