"""Panels for a Gaussian ecosystem spec: per member and per pair, measured beside the closed form.

    python reports/ecosystem_gaussian.py RESULTS_DIR SPEC [--preset cpu]

One column per sweep cell (the swept ``cell`` label). Top: E|μ̂_i − μ|² per member; bottom: E|μ̂_i − μ̂_j|²
per pair of members (homogenisation). Solid: the mean over seeds with a 95 % t-interval; dashed: the closed
form of madlab.engine.ecosystem.moment_recursion (real: fresh or none). Writes
RESULTS_DIR/figures/<spec name>.png and .csv.
"""
from __future__ import annotations

import argparse
import itertools
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


def cell_rows(out: Path, cell: str, ecos: list) -> list[dict]:
    eco = ecos[0]
    dim, generations = eco.dataset.get("dim", 2), eco.ecosystem.generations
    theory = moment_recursion(Ecosystem(eco.ecosystem, eco.seed), generations)
    names = theory["names"]
    mu = np.array([[[RunStore(out / run_folder(e.member_id(n))).state(t)["mean"] for n in names]
                    for t in range(1, generations + 1)] for e in ecos])  # (seeds, T, M, d)
    rows = []
    for t in range(generations):
        a = theory["cross"][t]
        quantities = [(n, (mu[:, t, i] ** 2).sum(-1), dim * a[i, i]) for i, n in enumerate(names)]
        quantities += [(f"{names[i]}~{names[j]}", ((mu[:, t, i] - mu[:, t, j]) ** 2).sum(-1),
                        dim * (a[i, i] + a[j, j] - 2 * a[i, j])) for i, j in itertools.combinations(range(len(names)), 2)]
        for label, values, closed in quantities:
            mean, lo, hi = interval(values)
            rows.append({"cell": cell, "generation": t + 1, "what": label, "seeds": len(values), "measured": mean,
                         "lo": lo, "hi": hi, "closed_form": closed})
    return rows


def draw(summary: pd.DataFrame, path: Path, title: str) -> None:
    cells = list(dict.fromkeys(summary.cell))
    fig, axes = plt.subplots(2, len(cells), figsize=(4.5 * len(cells), 7), sharex=True, squeeze=False)
    for col, cell in enumerate(cells):
        part = summary[summary.cell == cell]
        for what in dict.fromkeys(part.what):
            f = part[part.what == what]
            ax = axes[1 if "~" in what else 0, col]
            line = ax.plot(f.generation, f.measured, marker="o", ms=3, label=what)[0]
            ax.fill_between(f.generation, f.lo, f.hi, color=line.get_color(), alpha=0.15)
            ax.plot(f.generation, f.closed_form, ls="--", color=line.get_color())
        axes[0, col].set_title(cell)
        axes[0, col].set_ylabel("E |μ̂_i − μ|²  (member i)")
        axes[1, col].set_ylabel("E |μ̂_i − μ̂_j|²  (pair i~j)")
        axes[1, col].set_xlabel("generation")
        for ax in axes[:, col]:
            ax.legend(fontsize=8, title="solid: measured (95 % CI), dashed: closed form", title_fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("spec")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    out, spec = Path(args.dir), load_ecosystem_spec(args.spec, preset=args.preset)
    cells: dict[str, list] = {}
    for eco in spec.runs:
        cells.setdefault(str(eco.swept.get("cell", "all")), []).append(eco)
    summary = pd.DataFrame([row for cell, ecos in cells.items() for row in cell_rows(out, cell, ecos)])
    (out / "figures").mkdir(exist_ok=True)
    summary.to_csv(out / "figures" / f"{spec.runs[0].name}.csv", index=False)
    eco = spec.runs[0]
    draw(summary, out / "figures" / f"{spec.runs[0].name}.png",
         f"{eco.name}: {len(eco.members)} Gaussian members, d = {eco.dataset.get('dim', 2)}, real: {eco.ecosystem.real}, "
         f"{len(next(iter(cells.values())))} seeds")
    inside = (summary.closed_form >= summary.lo) & (summary.closed_form <= summary.hi)
    print(f"closed form inside the 95 % interval: {inside.sum()} of {len(summary)}")
    last = summary[summary.generation == summary.generation.max()]
    print(last.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
