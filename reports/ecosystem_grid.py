"""Panels for an α/β grid spec (cells labelled ``alpha=<α>,beta=<β>``): chosen metrics per β, a line per α.

    python reports/ecosystem_grid.py RESULTS_DIR [--metrics perplexity,cross_unigram_tv_mean]

Members and seeds averaged (95 % t-band over ecosystem seeds). Writes RESULTS_DIR/figures/ecosystem_grid.png
and ecosystem_grid.csv.
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


def summarise(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    rows = []
    per_seed = table[table.metric.isin(metrics)].groupby(["cell", "metric", "generation", "eco_seed"]).value.mean()
    for (cell, metric, t), values in per_seed.groupby(level=[0, 1, 2]):
        v = values.to_numpy()
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
        rows.append({"cell": cell, "metric": metric, "generation": t, "seeds": len(v), "mean": v.mean(),
                     "lo": v.mean() - half, "hi": v.mean() + half})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--metrics", default="perplexity,cross_unigram_tv_mean")
    args = parser.parse_args()
    out, metrics = Path(args.dir), args.metrics.split(",")
    table = pd.read_parquet(out / "metrics.parquet")
    summary = summarise(table, metrics)
    betas = sorted({c.split("beta=")[1] for c in summary.cell}, key=float)
    fig, axes = plt.subplots(len(metrics), len(betas), figsize=(4.2 * len(betas), 3.2 * len(metrics)), squeeze=False)
    for col, beta in enumerate(betas):
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for cell in sorted(c for c in summary.cell.unique() if c.endswith(f"beta={beta}")):
                f = summary[(summary.cell == cell) & (summary.metric == metric)]
                line = ax.plot(f.generation, f["mean"], marker="o", ms=3, label=cell.split(",")[0])[0]
                ax.fill_between(f.generation, f.lo, f.hi, color=line.get_color(), alpha=0.15)
            ax.set_title(f"{metric}, β = {beta}")
            ax.set_xlabel("generation")
            ax.legend(fontsize=7)
    fig.suptitle(f"{table.sweep.iloc[0]}: {summary.seeds.max()} seeds, 95 % intervals")
    fig.tight_layout()
    (out / "figures").mkdir(exist_ok=True)
    fig.savefig(out / "figures" / "ecosystem_grid.png", dpi=100)
    summary.to_csv(out / "figures" / "ecosystem_grid.csv", index=False)


if __name__ == "__main__":
    main()
