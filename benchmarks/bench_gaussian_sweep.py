"""Benchmark: a 1,000-run Gaussian Monte-Carlo sweep through `madlab run`.

Goals (issue 16): 1,000 runs (d = 10, n = 100, 20 generations, fully-synthetic, all metrics)
end to end through `madlab run` in <= 5 s on the 2-core dev machine, and within 2x of a bare
batched numpy loop computing the same metrics. Measured in the same invocation:
  * madlab run: the CLI end to end (Ray start-up, batched workers, records, table);
  * engine: madlab's batched engine (madlab.engine.batched.BatchLoop) in this process, no files;
  * bare batched: benchmarks/bare_batched.py, the hand-written floor (same metrics, no files);
  * floor parts: the two costs no implementation of these metrics avoids, timed alone
    (the 20,000 Vendi eigendecompositions of 100 x 100 kernel matrices; the k-NN distance
    blocks), so the report can say where the time goes;
  * optionally (--naive) the same runs one at a time through the per-run Loop (`--no-ray`),
    and the old bare loop without metrics (--unbatched-floor).
Timings on a loaded machine are not measurements: the ratios (same invocation) are what to read,
and absolute figures must be re-measured on an idle machine. The load average is printed.

    python benchmarks/bench_gaussian_sweep.py [--runs 1000] [--naive] [--repeats 1]
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
from bare_batched import bare_sweep  # noqa: E402

DIM, N, GENERATIONS = 10, 100, 20


def spec(runs: int) -> dict:
    return {
        "name": "bench-gaussian",
        "dataset": {"name": "gaussian", "dim": DIM},
        "generator": {"name": "gaussian"},
        "loop": {"scheme": "fully-synthetic", "generations": GENERATIONS, "n_real": N, "n_synthetic": N, "bias": 1.0},
        "metrics": {"k": 5},
        "sweep": {"seed": list(range(runs))},
    }


def timed_cli(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "madlab", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def engine(runs: int) -> float:
    import torch
    from threadpoolctl import threadpool_limits

    from madlab.engine.batched.loop import BatchLoop
    from madlab.specs import build_spec

    torch.set_num_threads(1)
    configs = [r.config for r in build_spec(spec(runs)).runs]
    start = time.perf_counter()
    with threadpool_limits(1):
        BatchLoop(configs).run()
    return time.perf_counter() - start


def bare(runs: int) -> float:
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    bare_sweep(runs, dim=DIM, n=N, generations=GENERATIONS)
    return time.perf_counter() - start


def floor_parts(runs: int) -> dict[str, float]:
    """Seconds of the unavoidable arithmetic for runs x generations, on random data of the right shapes."""
    import torch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((runs, N, DIM)))
    kernel = np.exp(-torch.cdist(x, x).numpy() ** 2 / 2) / N
    start = time.perf_counter()
    np.linalg.eigvalsh(kernel)
    eig = time.perf_counter() - start
    start = time.perf_counter()
    torch.cdist(x, x), torch.cdist(x, x)  # fake-fake and real-fake blocks
    dist = time.perf_counter() - start
    return {"vendi eigvalsh": eig * GENERATIONS, "k-NN distances": dist * GENERATIONS}


def unbatched_floor(runs: int) -> float:
    start = time.perf_counter()
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((N, DIM))
        for _ in range(GENERATIONS):
            mean, cov = x.mean(0), np.cov(x, rowvar=False)
            np.trace(cov)
            x = rng.multivariate_normal(mean, cov, N)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the measurements this many times")
    parser.add_argument("--naive", action="store_true", help="also time the per-run loop (--no-ray)")
    parser.add_argument("--unbatched-floor", action="store_true", help="also time the old metric-free loop")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec(args.runs)))
        for repeat in range(args.repeats):
            results.setdefault("madlab run", []).append(timed_cli(["run", str(path), "--out", f"{tmp}/ray{repeat}"]))
            results.setdefault("engine", []).append(engine(args.runs))
            results.setdefault("bare batched", []).append(bare(args.runs))
            for name, seconds in floor_parts(args.runs).items():
                results.setdefault(name, []).append(seconds)
            if args.naive:
                results.setdefault("naive", []).append(
                    timed_cli(["run", str(path), "--out", f"{tmp}/naive{repeat}", "--no-ray"]))
            if args.unbatched_floor:
                results.setdefault("unbatched floor", []).append(unbatched_floor(args.runs))
    load_after = os.getloadavg()
    best = {k: min(v) for k, v in results.items()}
    print(f"runs={args.runs} generations={GENERATIONS} d={DIM} n={N}; load average {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f} on {os.cpu_count()} cores (re-measure absolute times on an idle machine)")
    base = best["bare batched"]
    print(f"madlab run (end to end)        {best['madlab run']:8.1f} s   x{best['madlab run'] / base:.2f} of bare batched"
          f"   goal <= 5 s and <= 2x")
    print(f"madlab batched engine, 1 proc  {best['engine']:8.1f} s   x{best['engine'] / base:.2f} of bare batched")
    print(f"bare batched numpy, 1 proc     {base:8.1f} s")
    for name in ("vendi eigvalsh", "k-NN distances"):
        print(f"  of which floor: {name:14s}{best[name]:8.1f} s   ({best[name] / base:.0%} of bare batched)")
    if "naive" in best:
        print(f"per-run loop (--no-ray)        {best['naive']:8.1f} s   x{best['naive'] / best['madlab run']:.2f} of madlab run")
    if "unbatched floor" in best:
        print(f"old floor (no metrics)         {best['unbatched floor']:8.1f} s")


if __name__ == "__main__":
    main()
