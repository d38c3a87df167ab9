"""Panels for a text ecosystem spec (loops/ecosystem_heat_death.yaml): diversity per temperature and outside data.

    python reports/ecosystem_text.py RESULTS_DIR SPEC [--preset cpu]

Cells are labelled ``outside=<none|10pct>,T=<λ>``. One panel per metric (members and seeds averaged, 95 %
t-interval over ecosystem seeds): unigram entropy (dotted: log V, the uniform distribution's), vocabulary
used, distinct-1, and the cross-member unigram TV (homogenisation). Colour: temperature; line style:
outside data. Writes RESULTS_DIR/figures/<spec name>.png and .csv.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ecosystem_grid import summarise  # noqa: E402  (the same seed intervals; reports/ is the script's folder)
from madlab.datasets import open_dataset  # noqa: E402
from madlab.specs.ecosystem import load_ecosystem_spec  # noqa: E402

METRICS = ["unigram_entropy", "vocab_used", "distinct_1", "cross_unigram_tv_mean"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("spec")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    out, spec = Path(args.dir), load_ecosystem_spec(args.spec, preset=args.preset)
    summary = summarise(pd.read_parquet(out / "metrics.parquet"), METRICS)
    (out / "figures").mkdir(exist_ok=True)
    summary.to_csv(out / "figures" / f"{spec.runs[0].name}.csv", index=False)
    vocab = open_dataset(spec.runs[0].dataset).vocab_size
    temps = sorted({c.split("T=")[1] for c in summary.cell}, key=float)
    colours = dict(zip(temps, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.3 * len(METRICS), 4))
    for ax, metric in zip(axes, METRICS):
        for cell in sorted(summary.cell.unique()):
            f = summary[(summary.cell == cell) & (summary.metric == metric)]
            temp, outside = cell.split("T=")[1], cell.split(",")[0].split("=")[1]
            style = "-" if outside == "none" else "--"
            ax.plot(f.generation, f["mean"], ls=style, color=colours[temp], label=f"T={temp}, outside {outside}")
            ax.fill_between(f.generation, f.lo, f.hi, color=colours[temp], alpha=0.12)
        if metric == "unigram_entropy":
            ax.axhline(np.log(vocab), ls=":", color="k", lw=1, label=f"log V (V = {vocab})")
        ax.set_title(metric)
        ax.set_xlabel("generation")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{spec.runs[0].name}: two ngram members, W = 0.5/0.5, {summary.seeds.max()} seeds")
    fig.tight_layout()
    fig.savefig(out / "figures" / f"{spec.runs[0].name}.png", dpi=100)
    last = summary[summary.generation.isin([1, summary.generation.max()])]
    print(last.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
