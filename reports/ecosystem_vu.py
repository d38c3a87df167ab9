"""Figure for loops/ecosystem_vu_gaussian.yaml: measured E|μ̂ − μ|² per (α, β) beside the closed form.

    python reports/ecosystem_vu.py RESULTS_DIR [SPEC] [--preset cpu]

Measured: the mean over seeds of mean_shift² (averaged over the two members), with a 95 % t-interval
over seeds. Closed form: d · mean_i A_ii(t) from madlab.engine.ecosystem.moment_recursion. Also the
homogenisation panel: the mean pairwise W2 between the members' samples. Writes
RESULTS_DIR/figures/ecosystem_vu.png and ecosystem_vu.csv.
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

from madlab.engine.ecosystem import Ecosystem, moment_recursion  # noqa: E402
from madlab.specs.ecosystem import load_ecosystem_spec  # noqa: E402


def summarise(out: Path, spec_path: str, preset: str | None) -> pd.DataFrame:
    spec = load_ecosystem_spec(spec_path, preset=preset)
    table = pd.read_parquet(out / "metrics.parquet")
    cells = {}
    for eco in spec.runs:
        cells.setdefault(eco.swept["cell"], eco)
    rows = []
    for cell, eco in cells.items():
        dim = eco.dataset.get("dim", 2)
        theory = moment_recursion(Ecosystem(eco.ecosystem, eco.seed), eco.ecosystem.generations)["mean_sq"]
        part = table[table.cell == cell]
        shift = part[part.metric == "mean_shift"].assign(sq=lambda f: f.value**2)
        per_seed = shift.groupby(["seed", "generation"]).sq.mean().unstack("generation")
        cross = part[part.metric == "cross_w2_mean"].groupby("generation").value.mean()
        for t in per_seed.columns:
            values = per_seed[t].dropna().to_numpy()
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
            rows.append({"cell": cell, "generation": int(t), "seeds": len(values), "measured": values.mean(),
                         "lo": values.mean() - half, "hi": values.mean() + half,
                         "theory": dim * theory[int(t) - 1].mean(), "cross_w2_mean": cross.get(t, np.nan)})
    return pd.DataFrame(rows)


def draw(summary: pd.DataFrame, path: Path) -> None:
    betas = sorted({c.split("beta=")[1] for c in summary.cell}, key=float)
    fig, axes = plt.subplots(2, len(betas), figsize=(4 * len(betas), 6.5), sharex=True)
    for col, beta in enumerate(betas):
        for cell in sorted(c for c in summary.cell.unique() if c.endswith(f"beta={beta}")):
            f = summary[summary.cell == cell]
            label = cell.split(",")[0]
            line = axes[0, col].plot(f.generation, f.measured, marker="o", ms=3, label=f"{label} measured")[0]
            axes[0, col].fill_between(f.generation, f.lo, f.hi, color=line.get_color(), alpha=0.2)
            axes[0, col].plot(f.generation, f.theory, ls="--", color=line.get_color(), label=f"{label} closed form")
            axes[1, col].plot(f.generation, f.cross_w2_mean, marker="o", ms=3, color=line.get_color(), label=label)
        axes[0, col].set_title(f"β = {beta}" + (" (no real data)" if float(beta) == 0 else " (fresh real)"))
        axes[0, col].set_ylabel("E |μ̂ − μ|²")
        axes[1, col].set_ylabel("mean pairwise W2 between members")
        axes[1, col].set_xlabel("generation")
        axes[0, col].legend(fontsize=7)
    fig.suptitle("Two Gaussian members (Vu et al. α/β), 2-D, 100 rows a generation; 95 % intervals over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("spec", nargs="?", default="loops/ecosystem_vu_gaussian.yaml")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    out = Path(args.dir)
    summary = summarise(out, args.spec, args.preset)
    summary.to_csv(out / "figures" / "ecosystem_vu.csv", index=False) if (out / "figures").mkdir(
        exist_ok=True) is None else None
    draw(summary, out / "figures" / "ecosystem_vu.png")
    print(summary[summary.generation.isin([2, 5, 10])].to_string(index=False))


if __name__ == "__main__":
    main()
