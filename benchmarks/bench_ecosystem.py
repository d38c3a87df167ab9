"""An ecosystem of M cheap members vs M independent runs of the same sizes (issue 23's 1.2x target).

    python benchmarks/bench_ecosystem.py [--members 2] [--seeds 10] [--generations 10] [--n 100]

Both sides run in this process (``--no-ray``): the ecosystem with W = I (each member trains on its own
samples and its fixed real rows, so the work per member is the plain fixed-real loop's) and a plain sweep of
members x seeds fixed-real runs (not vectorised: batch_min_runs above the sweep size). Prints wall seconds and
the ratio. The ecosystem pays per generation what a run pays once: building each member's loop (components,
evaluator reference set) and the barrier's generation record (cross-member W2).
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time

import numpy as np

from madlab.runner import Runner
from madlab.runner.ecosystem import EcoRunner
from madlab.specs import build_spec
from madlab.specs.ecosystem import build_ecosystem_spec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cross", action="store_true", help="skip the cross-member metrics (the engine's "
                                                                "own overhead: what the 1.2x target is about)")
    args = parser.parse_args()
    if args.no_cross:
        import madlab.engine.ecosystem as engine

        engine.cross_member = lambda kind, samples: {}
    m, names = args.members, [f"m{i}" for i in range(args.members)]
    eco = {"name": "bench", "dataset": {"name": "gaussian", "dim": 2},
           "ecosystem": {"generations": args.generations, "real": "fixed", "mixing": np.eye(m).tolist(),
                         "members": [{"name": x, "generator": {"name": "gaussian"}, "n_real": args.n,
                                      "n_synthetic": args.n} for x in names]},
           "sweep": {"seed": list(range(args.seeds))}}
    plain = {"name": "bench", "dataset": {"name": "gaussian", "dim": 2}, "generator": {"name": "gaussian"},
             "loop": {"scheme": "fixed-real", "generations": args.generations, "n_real": args.n, "n_synthetic": args.n},
             "sweep": {"seed": list(range(args.seeds * m))}}
    eco_s, plain_s = [], []
    for _ in range(args.repeats):  # interleaved, best of each: the machine is shared
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            EcoRunner(build_ecosystem_spec(eco), f"{tmp}/eco", use_ray=False, stream=io.StringIO()).run()
            eco_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            Runner(build_spec(plain), f"{tmp}/plain", use_ray=False, stream=io.StringIO(), batch_min_runs=10**9).run()
            plain_s.append(time.perf_counter() - start)
    print(f"{'(no cross metrics) ' if args.no_cross else ''}{m} members x {args.seeds} seeds x {args.generations} generations, n = {args.n}: ecosystem "
          f"{min(eco_s):.1f} s, {m * args.seeds} independent runs {min(plain_s):.1f} s (best of {args.repeats}), "
          f"ratio {min(eco_s) / min(plain_s):.2f}")


if __name__ == "__main__":
    main()
