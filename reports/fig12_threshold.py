"""MAD Fig. 12's boundary by threshold search: for each n_s, the λ below which synthetic data lower the
effective sample size of the Gaussian fresh-real loop below n_r (n_r = 1000, d = 10, as Fig. 12).

    python reports/fig12_threshold.py --out results/fig12_threshold [--copy-to reports/figures]

Writes OUT/boundary.parquet (one row per n_s: interval, estimate, status, probes, chains),
OUT/probes.parquet (every probe of every search) and OUT/fig12_threshold.png/.pdf. See
madlab/analysis/ess_boundary.py for the criterion and why its probes are theory chains.
"""
from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import pandas as pd

from madlab.analysis.ess_boundary import ess_boundary
from madlab.core.files import atomic_write_bytes, atomic_write_table
from madlab.report.plots import DPI, pyplot

#: Fig. 12's n_s grid (loops/fig11_12_ess.yaml)
N_SYNTHETIC = [100, 167, 278, 464, 774, 1292, 2154, 3594, 5995, 10000]


def boundary_table(n_real: int, dim: int, lo: float, hi: float, tol: float, seed: int):
    rows, probes = [], []
    for n_s in N_SYNTHETIC:
        start = time.perf_counter()
        result = ess_boundary(n_real, n_s, lo=lo, hi=hi, dim=dim, seed=seed, tol=tol)
        rows.append({"n_real": n_real, "n_synthetic": n_s, "dim": dim, "status": result.status, "low": result.low,
                     "high": result.high, "estimate": result.estimate, "probes": len(result.probes),
                     "chains": int(result.probes["seeds"].sum()), "seconds": time.perf_counter() - start,
                     "method": result.method})
        probes.append(result.probes.assign(n_synthetic=n_s))
        print(f"n_s = {n_s}: {result.describe()} ({rows[-1]['seconds']:.1f} s)", flush=True)
    return pd.DataFrame(rows), pd.concat(probes, ignore_index=True)


def draw(table: pd.DataFrame, stem: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    found = table[table["low"].notna()]
    ax.errorbar(found["n_synthetic"], found["estimate"],
                yerr=[found["estimate"] - found["low"], found["high"] - found["estimate"]], fmt="o-", capsize=3,
                color="tab:blue", label="λ* (n_e = n_r), 95 % interval")
    ax.fill_between(found["n_synthetic"], found["high"], 1.0, color="tab:green", alpha=0.12, label="n_e ≥ n_r")
    ax.fill_between(found["n_synthetic"], table["low"].min() if len(found) else 0.5, found["low"], color="tab:red",
                    alpha=0.12, label="n_e < n_r")
    ax.set_xscale("log")
    ax.set_xlabel("n_s (synthetic samples per generation)")
    ax.set_ylabel("sampling bias λ")
    n_real, dim = int(table["n_real"].iloc[0]), int(table["dim"].iloc[0])
    ax.set_title(f"MAD Fig. 12 boundary by threshold search (n_r = {n_real}, d = {dim})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    for ext, kwargs in (("png", {"dpi": DPI}), ("pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches="tight", **kwargs)
        atomic_write_bytes(Path(f"{stem}.{ext}"), buffer.getvalue())
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/fig12_threshold")
    parser.add_argument("--copy-to", help="also copy the PNG to COPY_TO/fig12_threshold/")
    parser.add_argument("--n-real", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--range", nargs=2, type=float, default=(0.3, 1.0))
    parser.add_argument("--tol", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    table, probes = boundary_table(args.n_real, args.dim, *args.range, args.tol, args.seed)
    atomic_write_table(out / "boundary.parquet", table)
    atomic_write_table(out / "probes.parquet", probes)
    draw(table, out / "fig12_threshold")
    if args.copy_to:
        target = Path(args.copy_to) / "fig12_threshold"
        target.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target / "fig12_threshold.png", (out / "fig12_threshold.png").read_bytes())
    print(f"wrote {out / 'boundary.parquet'} and {out / 'fig12_threshold.png'}; "
          f"{int(table['chains'].sum())} chains in {table['seconds'].sum():.0f} s")
    return 0 if all(math.isfinite(v) for v in table["low"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
