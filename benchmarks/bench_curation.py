"""Curation's share of a generation's time, per curator, on a vector spec and an image spec.

Each case runs the same loop (same config and seed) once without curation and once per curator,
in-process (``madlab.engine.loop.Loop``), for ``--generations`` generations, and reads the step timings the
loop records per generation (``DONE``'s ``seconds``): ``candidates`` (the extra model draws a curator
needs beyond the samples drawn anyway), ``curation`` (the curator itself: rewards, verifier,
k-means, detector training) and the rest (data, fit, sample, metrics, publish). Best-of-K costs K x
sampling by definition, so its ``candidates`` time is reported against the plain run's ``sample``
time. Rewards, verifiers and detector features run batched on the run's device (``--device``).

    python benchmarks/bench_curation.py                       # vector (Gaussian, GMM) + image (GAN, MNIST)
    python benchmarks/bench_curation.py --only vector --generations 3 --json out.json
    python benchmarks/bench_curation.py --device cuda

Numbers taken on the shared 2-core dev machine under load are not measurements: re-run on an idle
machine before quoting them (benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from madlab.engine.loop import Loop
from madlab.specs import build_spec

VECTOR = {
    "name": "bench-curation-vector", "seed": 0,
    "dataset": {"name": "gmm25"}, "generator": {"name": "gmm", "n_components": 25},
    "loop": {"scheme": "fixed-real", "generations": 3, "n_real": 1000, "n_synthetic": 1000},
    "metrics": {"k": 5},
}
IMAGE = {
    "name": "bench-curation-image", "seed": 0,
    "dataset": {"name": "mnist5k"}, "generator": {"name": "gan", "preset": "cpu", "steps": 200},
    "loop": {"scheme": "fixed-real", "generations": 2, "n_real": 1000, "n_synthetic": 1000},
    "metrics": {"k": 5},
}
CURATORS = {
    "vector": {
        "best-of-k (K=4, log-density)": {"name": "best-of-k", "k": 4, "reward": {"name": "log-density"}},
        "verify (q=0.1, fa=0.2)": {"name": "verify", "quantile": 0.1, "false_accept": 0.2, "false_reject": 0.1},
        "self-correct (kmeans, 16)": {"name": "self-correct", "gamma": 0.5, "clusters": 16},
        "self-correct (assignment)": {"name": "self-correct", "gamma": 0.5, "method": "assignment"},
        "detector (b=1, pool 2)": {"name": "detector", "b": 1.0, "pool": 2},
    },
    "image": {
        "best-of-k (K=4, classifier)": {"name": "best-of-k", "k": 4, "reward": {"name": "classifier"}},
        "verify (tau=0.9)": {"name": "verify", "threshold": 0.9, "false_accept": 0.1},
        "self-correct (kmeans 16/class, pixels)": {"name": "self-correct", "gamma": 0.5, "clusters": 16},
        "detector (b=1, pool 2, LeNet)": {"name": "detector", "b": 1.0, "pool": 2},
    },
}


def time_run(spec: dict, curation: dict | None, generations: int, device: str) -> dict:
    spec = json.loads(json.dumps(spec))
    spec["loop"]["generations"] = generations
    if curation is not None:
        spec["loop"]["curation"] = curation
    (run,) = build_spec(spec).runs
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        Loop(run.config, out, device=device).run(on_generation=lambda t, rec: [
            totals.__setitem__(k, totals.get(k, 0.0) + v) for k, v in rec["seconds"].items()])
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["vector", "image"])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    rows = []
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.generations} generations per run")
    print(f"{'case':<42} {'total s':>8} {'curation':>9} {'extra draws':>12} {'share':>7} {'draws / plain sample':>21}")
    for kind, spec in (("vector", VECTOR), ("image", IMAGE)):
        if args.only and kind != args.only:
            continue
        plain = time_run(spec, None, args.generations, args.device)
        plain_total = sum(plain.values())
        print(f"{kind + ': no curation':<42} {plain_total:8.2f} {'':>9} {'':>12} {'':>7} {'':>21}")
        for label, curation in CURATORS[kind].items():
            start = time.perf_counter()
            s = time_run(spec, curation, args.generations, args.device)
            total = sum(s.values())
            share = (s.get("curation", 0.0) + s.get("candidates", 0.0)) / total
            ratio = s.get("candidates", 0.0) / plain["sample"] if plain.get("sample") else float("nan")
            rows.append({"kind": kind, "case": label, "seconds": s, "plain": plain, "share": share,
                         "extra_draws_vs_plain_sample": ratio, "wall": time.perf_counter() - start})
            print(f"{kind + ': ' + label:<42} {total:8.2f} {s.get('curation', 0):9.3f} {s.get('candidates', 0):12.3f} "
                  f"{share:7.1%} {ratio:21.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
