"""Figure for loops/ecosystem_vu_gaussian.yaml: measured moments per (α, β) beside the closed form.

    python reports/ecosystem_vu.py RESULTS_DIR [SPEC] [--preset cpu]

Top row: E|μ̂ − μ|² (mean over the two members); middle row: E|μ̂_a − μ̂_b|², the members' means growing
alike (homogenisation); both measured over seeds (95 % t-interval) with the closed form of
madlab.engine.ecosystem.moment_recursion dashed beside it. Bottom row: the members' mean pairwise
Fréchet distance (cross_frechet_mean). Writes RESULTS_DIR/figures/ecosystem_vu.png and .csv.
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
from madlab.store.storage import RunStore, run_folder  # noqa: E402


def interval(values: np.ndarray) -> tuple[float, float, float]:
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def summarise(out: Path, spec_path: str, preset: str | None) -> pd.DataFrame:
    spec = load_ecosystem_spec(spec_path, preset=preset)
    table = pd.read_parquet(out / "metrics.parquet")
    cells: dict[str, list] = {}
    for eco in spec.runs:
        cells.setdefault(eco.swept["cell"], []).append(eco)
    rows = []
    for cell, ecos in cells.items():
        eco = ecos[0]
        dim, generations = eco.dataset.get("dim", 2), eco.ecosystem.generations
        theory = moment_recursion(Ecosystem(eco.ecosystem, eco.seed), generations)
        mu = np.array([[[RunStore(out / run_folder(e.member_id(n))).state(t)["mean"] for n in ("a", "b")]
                        for t in range(1, generations + 1)] for e in ecos])  # (seeds, T, 2, d)
        error = (mu**2).sum(-1).mean(-1)
        apart = ((mu[:, :, 0] - mu[:, :, 1]) ** 2).sum(-1)
        frechet = table[(table.cell == cell) & (table.metric == "cross_frechet_mean")].groupby("generation").value.mean()
        for t in range(generations):
            a = theory["cross"][t]
            row = {"cell": cell, "generation": t + 1, "seeds": len(ecos),
                   "theory_error": dim * theory["mean_sq"][t].mean(), "theory_apart": dim * (a[0, 0] + a[1, 1] - 2 * a[0, 1]),
                   "cross_frechet_mean": frechet.get(t + 1, np.nan)}
            for name, values in (("error", error[:, t]), ("apart", apart[:, t])):
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = interval(values)
            rows.append(row)
    return pd.DataFrame(rows)


def draw(summary: pd.DataFrame, path: Path) -> None:
    betas = sorted({c.split("beta=")[1] for c in summary.cell}, key=float)
    fig, axes = plt.subplots(3, len(betas), figsize=(4.2 * len(betas), 9.5), sharex=True)
    for col, beta in enumerate(betas):
        for cell in sorted(c for c in summary.cell.unique() if c.endswith(f"beta={beta}")):
            f = summary[summary.cell == cell]
            label = cell.split(",")[0].replace("alpha", "α")
            for r, name in enumerate(("error", "apart")):
                line = axes[r, col].plot(f.generation, f[name], marker="o", ms=3, label=f"{label}")[0]
                axes[r, col].fill_between(f.generation, f[f"{name}_lo"], f[f"{name}_hi"], color=line.get_color(),
                                          alpha=0.2)
                axes[r, col].plot(f.generation, f[f"theory_{name}"], ls="--", color=line.get_color())
            axes[2, col].plot(f.generation, f.cross_frechet_mean, marker="o", ms=3, color=line.get_color(), label=label)
        axes[0, col].set_title(f"β = {beta}" + (" (no real data)" if float(beta) == 0 else " (fresh real rows)"))
        axes[0, col].set_ylabel("E |μ̂ − μ|²")
        axes[1, col].set_ylabel("E |μ̂_a − μ̂_b|²")
        axes[2, col].set_ylabel("Fréchet distance a~b")
        axes[2, col].set_xlabel("generation")
        axes[0, col].legend(fontsize=8, title="solid: measured, dashed: closed form", title_fontsize=7)
    fig.suptitle("Two Gaussian members (Vu et al. α/β) on N(0, I₂), 100 rows a generation; 95 % intervals over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("spec", nargs="?", default="loops/ecosystem_vu_gaussian.yaml")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    out = Path(args.dir)
    summary = summarise(out, args.spec, args.preset)
    (out / "figures").mkdir(exist_ok=True)
    summary.to_csv(out / "figures" / "ecosystem_vu.csv", index=False)
    draw(summary, out / "figures" / "ecosystem_vu.png")
    print(summary[summary.generation.isin([2, 5, 10])].round(4).to_string(index=False))


if __name__ == "__main__":
    main()
