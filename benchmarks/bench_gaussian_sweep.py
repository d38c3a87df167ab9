"""Benchmark: a 1,000-run Gaussian Monte-Carlo sweep through `madlab run`.

Goal (issue 2): 1,000 runs (d = 10, n = 100, 20 generations, fully-synthetic) end to end through
`madlab run` in under 60 s on the 2-core dev machine. Reported against two baselines measured
in the same invocation:
  * naive: the same runs one at a time in one process (`madlab run --no-ray`: same work, no
    parallelism, no batching);
  * bare: a plain numpy loop doing only fit + sample + trace for every run and generation
    (the floor: no metrics, no files).

    python benchmarks/bench_gaussian_sweep.py [--runs 1000] [--skip-naive]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def spec(runs: int) -> dict:
    return {
        "name": "bench-gaussian",
        "dataset": {"name": "gaussian", "dim": 10},
        "generator": {"name": "gaussian"},
        "loop": {"scheme": "fully-synthetic", "generations": 20, "n_real": 100, "n_synthetic": 100, "bias": 1.0},
        "metrics": {"k": 5},
        "sweep": {"seed": list(range(runs))},
    }


def timed_cli(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "madlab", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bare(runs: int) -> float:
    start = time.perf_counter()
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((100, 10))
        for _ in range(20):
            mean, cov = x.mean(0), np.cov(x, rowvar=False)
            np.trace(cov)
            x = rng.multivariate_normal(mean, cov, 100)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec(args.runs)))
        t_ray = timed_cli(["run", str(path), "--out", f"{tmp}/ray"])
        t_naive = None if args.skip_naive else timed_cli(["run", str(path), "--out", f"{tmp}/naive", "--no-ray"])
        t_bare = bare(args.runs)
    print(f"runs={args.runs} generations=20 d=10 n=100")
    print(f"madlab run (Ray, batched)      {t_ray:8.1f} s   goal < 60 s for 1000 runs")
    if t_naive is not None:
        print(f"naive one-at-a-time (--no-ray) {t_naive:8.1f} s   speed-up x{t_naive / t_ray:.2f}")
    print(f"bare numpy fit+sample loop     {t_bare:8.1f} s   madlab/bare = {t_ray / t_bare:.2f}")


if __name__ == "__main__":
    main()
