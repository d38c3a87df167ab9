"""Generic panels for any ecosystem results folder: per-member metrics, homogenisation, pool.

    python reports/ecosystem_panels.py RESULTS_DIR [--metrics modes,hq_fraction,precision,recall]

One panel per member metric (a line per member; mean over ecosystem seeds, 95 % t-band where there are
several), one for the cross-member means (``*_mean``: homogenisation), one for the pool metrics where there is
a pool. Writes RESULTS_DIR/figures/ecosystem_panels.png and prints the first and last generation.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402


def band(frame: pd.DataFrame) -> pd.DataFrame:
    per_seed = frame.groupby(["generation", "eco_seed"]).value.mean()
    out = per_seed.groupby(level=0).agg(["mean", "std", "count"])
    half = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1)) * out["std"].fillna(0) / np.sqrt(out["count"])
    return out.assign(lo=out["mean"] - half, hi=out["mean"] + half)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--metrics", default="modes,hq_fraction,precision,recall")
    args = parser.parse_args()
    out = Path(args.dir)
    table = pd.read_parquet(out / "metrics.parquet")
    members = sorted(m for m in table.member.dropna().unique() if m not in ("*", "pool") and "~" not in m)
    metrics = [m for m in args.metrics.split(",") if m in set(table.metric)]
    cross = sorted(m for m in table.metric.unique() if m.endswith("_mean") and m.startswith("cross_"))
    pool = sorted(table[table.member == "pool"].metric.unique())
    panels = [("member", m) for m in metrics] + [("cross", m) for m in cross] + [("pool", m) for m in pool]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (kind, metric) in zip(axes[0], panels):
        groups = members if kind == "member" else ["*" if kind == "cross" else "pool"]
        for member in groups:
            b = band(table[(table.member == member) & (table.metric == metric)])
            line = ax.plot(b.index, b["mean"], marker="o", ms=3, label=member)[0]
            ax.fill_between(b.index, b.lo, b.hi, color=line.get_color(), alpha=0.15)
        ax.set_title(metric if kind == "member" else f"{metric} ({kind})")
        ax.set_xlabel("generation")
        ax.legend(fontsize=7)
    seeds = table.eco_seed.nunique()
    fig.suptitle(f"{table.sweep.iloc[0]}: {len(members)} members, {seeds} seed(s)")
    fig.tight_layout()
    (out / "figures").mkdir(exist_ok=True)
    fig.savefig(out / "figures" / "ecosystem_panels.png", dpi=100)
    wanted = table[table.metric.isin(metrics + cross + pool)]
    edge = wanted[wanted.generation.isin([1, wanted.generation.max()])]
    print(edge.groupby(["metric", "member", "generation"]).value.mean().round(3).to_string())


if __name__ == "__main__":
    main()
