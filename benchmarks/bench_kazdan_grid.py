"""Benchmark: Kazdan et al.'s Gaussian grid (model collapse: replace vs accumulate vs accumulate-subsample).

The grid (issue 16): dimension {1, 3, 10, 31, 100} x sample size n {10, 31, 100, 316, 1000}
(n real samples, n synthetic per generation, n scored) x 100 seeds x {fully-synthetic (replace),
accumulate, accumulate-subsample} x 100 generations = 7,500 runs, 750,000 generations. Goal:
end to end through `madlab run` in <= 10 minutes on the 2-core dev machine, reported beside the
bare batched numpy baseline (benchmarks/bare_batched.py) computing the same metrics.

Two modes:

* ``--probe`` (default, minutes): for every (d, n, scheme) cell, time madlab's batched engine
  and the bare baseline on ``--probe-seeds`` seeds x ``--probe-generations`` generations in
  this process, plus each metric group of the baseline alone, and extrapolate to the full grid
  (cost is linear in seeds and, but for accumulate-subsample's growing pool, in generations).
  Prints where the time goes: per cell and per metric.
* ``--cost-model``: each metric group's cost for one generation of a few runs per (d, n),
  extrapolated to the grid (the quickest way to see which metric dominates);
* ``--end-to-end``: `madlab run` on the grid spec (``--seeds``/``--generations`` scale it
  down), then the bare baseline on the same grid; both wall times and their ratio.

``--metrics closed-form`` restricts both sides to w2, trace_cov and mean_shift (the quantities
Kazdan et al. track); the default is every metric madlab records.
Loaded-machine timings are not measurements; re-measure on an idle machine.

    python benchmarks/bench_kazdan_grid.py [--probe] [--metrics all|closed-form]
    python benchmarks/bench_kazdan_grid.py --end-to-end [--seeds 100] [--generations 100] [--bare-seeds 20]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_batched import ALL, bare_sweep  # noqa: E402

DIMS = [1, 3, 10, 31, 100]
SIZES = [10, 31, 100, 316, 1000]
SCHEMES = ["fully-synthetic", "accumulate", "accumulate-subsample"]
CLOSED_FORM = ["w2", "trace_cov", "mean_shift"]
PRDC = ["precision", "recall", "density", "coverage"]


def grid_spec(seeds: int, generations: int, metrics: str, dims=DIMS, sizes=SIZES, schemes=SCHEMES) -> dict:
    base = {
        "name": "kazdan-grid",
        "dataset": {"name": "gaussian", "dim": dims[0]},
        "generator": {"name": "gaussian"},
        "loop": {"scheme": schemes[0], "generations": generations, "n_real": sizes[0], "n_synthetic": sizes[0]},
        "metrics": {"k": 5},
    }
    if metrics == "closed-form":
        base["metrics"]["names"] = CLOSED_FORM
    sizes_axis = [{"label": f"n={n}", "loop": {"n_real": n, "n_synthetic": n}} for n in sizes]
    base["sweep"] = {"dataset.dim": list(dims), "size": sizes_axis, "loop.scheme": list(schemes),
                     "seed": list(range(seeds))}
    return base


def _engine(dim, n, scheme, seeds, generations, metrics, full_generations=100) -> float:
    """Seconds for ``full_generations``: the batch's set-up and generation 1 (reference sets,
    k-NN radii, bandwidths: paid once per run) plus the mean later generation times the rest."""
    from madlab.engine.batched.loop import BatchLoop
    from madlab.specs import build_spec

    spec = grid_spec(seeds, generations, metrics, [dim], [n], [scheme])
    configs = [r.config for r in build_spec(spec).runs]
    stamps = [time.perf_counter()]
    BatchLoop(configs).run(on_generation=lambda result: stamps.append(time.perf_counter()))
    first, later = stamps[1] - stamps[0], np.diff(stamps[1:])
    return first + (later.mean() if len(later) else first) * (full_generations - 1)


def _bare(dim, n, scheme, seeds, generations, groups) -> float:
    start = time.perf_counter()
    bare_sweep(seeds, dim=dim, n=n, generations=generations, scheme=scheme, metrics=groups)
    return time.perf_counter() - start


def probe(args) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    groups = ALL if args.metrics == "all" else ("w2", "trace_cov", "mean_shift")
    scale = (100 / args.probe_seeds) * (100 / args.probe_generations)
    total_engine = total_bare = 0.0
    by_metric: dict[str, float] = {}
    print(f"probe: {args.probe_seeds} seeds x {args.probe_generations} generations per cell, extrapolated x{scale:g} "
          f"to 100 seeds x 100 generations; metrics={args.metrics}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'d':>4} {'n':>5} {'scheme':22s} {'engine s':>9} {'bare s':>9} {'ratio':>6}   bare per metric group (s, full grid)")
    for dim in DIMS:
        for n in SIZES:
            for scheme in SCHEMES:
                engine = _engine(dim, n, scheme, args.probe_seeds, args.probe_generations, args.metrics) * (
                    100 / args.probe_seeds)
                bare = _bare(dim, n, scheme, args.probe_seeds, args.probe_generations, groups) * scale
                fit_sample = _bare(dim, n, scheme, args.probe_seeds, args.probe_generations, ()) * scale
                parts = {"fit+sample": fit_sample}
                for group in groups:
                    parts[group] = max(0.0, _bare(dim, n, scheme, args.probe_seeds, args.probe_generations, (group,))
                                       * scale - fit_sample)
                for k, v in parts.items():
                    by_metric[k] = by_metric.get(k, 0.0) + v
                total_engine += engine
                total_bare += bare
                detail = " ".join(f"{k}={v:.0f}" for k, v in parts.items())
                print(f"{dim:4d} {n:5d} {scheme:22s} {engine:9.1f} {bare:9.1f} {engine / bare:6.2f}   {detail}", flush=True)
    print(f"full grid, one process: engine {total_engine / 60:.1f} min, bare batched {total_bare / 60:.1f} min "
          f"(x{total_engine / total_bare:.2f}); on 2 workers about half. Goal: <= 10 min end to end.")
    print("bare time by metric group (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in by_metric.items()))


def cost_model(args) -> None:
    """Per (d, n): seconds of each metric group for one generation of ``--probe-seeds`` runs (the
    bare batched arithmetic, after a warm-up), times the grid's 30,000 run-generations per (d, n)
    (100 seeds x 3 schemes x 100 generations). Shows which metric makes the full grid long."""
    import numpy as np
    import torch
    from bare_batched import _metrics, _radii
    from scipy.spatial.distance import pdist
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    b = args.probe_seeds
    per_cell = 100 * len(SCHEMES) * 100 / b
    totals: dict[str, float] = {}
    print(f"cost model: {b} runs x 1 generation per (d, n), x{per_cell:g} to 100 seeds x 3 schemes x 100 generations;"
          f" load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'d':>4} {'n':>5}  " + "  ".join(f"{g:>10}" for g in ("fit+sample", "w2", "moments", "prdc", "vendi")) + "   (min, full grid)")
    for dim in DIMS:
        for n in SIZES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((b, n, dim))
            real = torch.from_numpy(rng.standard_normal((b, n, dim)))
            radii = _radii(real, 5)
            bandwidth = np.array([np.median(pdist(r)) for r in real.numpy()])
            row = {}
            start = time.perf_counter()
            mean = x.mean(1)
            c = x - mean[:, None]
            cov = np.einsum("bni,bnj->bij", c, c) / (n - 1)
            w, v = np.linalg.eigh(cov)
            fake = mean[:, None] + rng.standard_normal((b, n, dim)) @ (v * np.sqrt(np.clip(w, 0, None))[:, None, :]).transpose(0, 2, 1)
            row["fit+sample"] = time.perf_counter() - start
            for name, groups in (("w2", ("w2",)), ("moments", ("trace_cov", "mean_shift")), ("prdc", ("prdc",)),
                                 ("vendi", ("vendi",))):
                start = time.perf_counter()
                _metrics(real, radii, bandwidth, mean, cov, fake, 5, set(groups))
                row[name] = time.perf_counter() - start
            for k, v in row.items():
                totals[k] = totals.get(k, 0.0) + v * per_cell
            print(f"{dim:4d} {n:5d}  " + "  ".join(f"{row[k] * per_cell / 60:10.2f}" for k in row), flush=True)
    print("full grid (one process, min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in totals.items())
          + f"; total {sum(totals.values()) / 60:.1f} (about half on 2 workers)")


def _bare_cell(task) -> float:
    dim, n, scheme, seeds, generations, groups = task
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    start = time.perf_counter()
    bare_sweep(seeds, dim=dim, n=n, generations=generations, scheme=scheme, metrics=groups,
               chunk=max(1, 2_000_000 // (n * dim * generations)))
    return time.perf_counter() - start


def end_to_end(args) -> None:
    """`madlab run` on the grid (its default two workers), then the bare baseline on the same grid
    in ``--bare-workers`` processes (cells spread over them, largest first), so both sides use the
    same cores. ``--bare-seeds`` < ``--seeds`` runs the baseline on fewer seeds and scales its time
    linearly (its cost is linear in the seeds: every run is the same arithmetic)."""
    from concurrent.futures import ProcessPoolExecutor

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kazdan.yaml"
        path.write_text(yaml.safe_dump(grid_spec(args.seeds, args.generations, args.metrics)))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "madlab", "run", str(path), "--out", f"{tmp}/out"], check=True,
                       stdout=subprocess.DEVNULL)
        t_madlab = time.perf_counter() - start
        import pandas as pd

        table = pd.read_parquet(Path(tmp) / "out" / "metrics.parquet")
        rows = f"{len(table):,} table rows, {table.groupby(['run_id', 'generation']).ngroups:,} run-generations"
    load_after_madlab = os.getloadavg()[0]
    groups = ALL if args.metrics == "all" else ("w2", "trace_cov", "mean_shift")
    bare_seeds = min(args.bare_seeds or args.seeds, args.seeds)
    tasks = sorted(((dim, n, scheme, bare_seeds, args.generations, groups)
                    for dim in DIMS for n in SIZES for scheme in SCHEMES), key=lambda t: -t[0] * t[1])
    start = time.perf_counter()
    with ProcessPoolExecutor(args.bare_workers) as pool:
        cpu = sum(pool.map(_bare_cell, tasks))
    t_bare = (time.perf_counter() - start) * args.seeds / bare_seeds
    print(f"Kazdan grid: {len(DIMS)}x{len(SIZES)} cells x {args.seeds} seeds x {len(SCHEMES)} schemes x "
          f"{args.generations} generations, metrics={args.metrics}; load {load_after_madlab:.1f} after madlab run; "
          f"{rows}")
    print(f"madlab run (end to end) {t_madlab:9.1f} s   goal <= 600 s")
    scaled = f", measured on {bare_seeds} seeds and scaled x{args.seeds / bare_seeds:g}" if bare_seeds < args.seeds else ""
    print(f"bare batched, {args.bare_workers} processes {t_bare:9.1f} s (process time "
          f"{cpu * args.seeds / bare_seeds:.1f} s{scaled})   madlab/bare = {t_madlab / t_bare:.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--cost-model", action="store_true", help="per-metric cost of one generation, extrapolated")
    parser.add_argument("--metrics", choices=["all", "closed-form"], default="all")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--bare-workers", type=int, default=2, help="--end-to-end: processes for the baseline")
    parser.add_argument("--bare-seeds", type=int, help="--end-to-end: baseline on fewer seeds, time scaled")
    parser.add_argument("--probe-seeds", type=int, default=5)
    parser.add_argument("--probe-generations", type=int, default=4)
    parser.add_argument("--dims", type=int, nargs="+", default=DIMS, help="a sub-grid (default: the full one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    args = parser.parse_args()
    DIMS[:], SIZES[:] = args.dims, args.sizes
    if args.cost_model:
        cost_model(args)
    else:
        end_to_end(args) if args.end_to_end else probe(args)


if __name__ == "__main__":
    main()
