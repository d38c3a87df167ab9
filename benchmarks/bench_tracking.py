"""Benchmark (issue 25): what tracking costs a sweep's wall time.

The Gaussian sweep of bench_gaussian_sweep.py (d = 10, n = 100, 20 generations, every metric),
through `madlab run` with tracking off and with `--track NAME`, alternating, in one invocation
(the ratio is what to read on a loaded machine; the load average is printed). The tracked run's
time includes the end of the sweep waiting for the tracker to take the last points.
Goal: <= 10 % more wall time with MLflow on, for 1,000 runs.

    python benchmarks/bench_tracking.py [--runs 1000] [--track mlflow] [--repeats 1] [--no-ray]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gaussian_sweep import spec  # noqa: E402


def timed_run(spec_path: Path, out: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "madlab", "run", str(spec_path), "--out", str(out), *extra], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--track", default="mlflow")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    base = ["--no-ray"] if args.no_ray else []
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec(args.runs)))
        off, on = [], []
        for i in range(args.repeats):
            off.append(timed_run(spec_path, Path(tmp) / f"off-{i}", base))
            on.append(timed_run(spec_path, Path(tmp) / f"on-{i}", base + ["--track", args.track]))
    print(f"load average {os.getloadavg()[0]:.1f} (2-core machine: above ~1 the numbers move)")
    print(f"{args.runs} Gaussian runs x 20 generations{' (--no-ray)' if args.no_ray else ''}: "
          f"tracking off {min(off):.1f} s, --track {args.track} {min(on):.1f} s (best of {args.repeats}): "
          f"x{min(on) / min(off):.3f} ({100 * (min(on) / min(off) - 1):+.1f} %; goal <= +10 %)")


if __name__ == "__main__":
    main()
