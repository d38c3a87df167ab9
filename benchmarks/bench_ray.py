"""Benchmark: Ray parallel efficiency and per-generation scheduling overhead.

1. Parallel efficiency (goal: speed-up >= 1.7x on the 2-core dev machine): N CPU-bound runs
   (a RealNVP flow on the Rosenbrock density, one torch thread each) through the Ray runner vs
   the same runs one after another in this process (``use_ray=False``), both measured here.
   The Ray time includes the workers' start-up (each imports torch); Ray's own start-up is
   reported separately. The machine's load average is printed before and after: other
   processes on the machine take cores away from both measurements, but more from the
   parallel one (it needs both cores).
2. Scheduling overhead per generation (goal < 2% for image runs): the DONE record of every
   generation holds its seconds per phase; overhead is the time not spent in fit, sample or
   metrics. Reported two ways:
     * in the worker: wall time of the run minus fit/sample/metrics (training-set assembly,
       model construction, publishing checkpoint + samples + grid, bookkeeping);
     * end to end: workers x sweep wall time minus fit/sample/metrics, i.e. everything the
       sweep paid beyond the work itself (worker start-up, dispatch, idle tail, driver).
   for the flow runs above and for small class-conditional DDPM runs on MNIST (mnist5k).

    python benchmarks/bench_ray.py [--runs 8] [--epochs 30] [--skip-image]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per run, in both measurements
os.environ.setdefault("MKL_NUM_THREADS", "1")


def flow_spec(runs: int, epochs: int) -> dict:
    return {
        "name": "bench-ray-flow",
        "dataset": {"name": "rosenbrock"},
        "generator": {"name": "flow", "preset": "cpu", "coupling": "affine", "layers": 4, "hidden": 32, "epochs": epochs},
        "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 1000, "n_synthetic": 1000},
        "metrics": {"k": 5},
        "resources": {"num_cpus": 1},
        "sweep": {"seed": list(range(runs))},
    }


def ddpm_spec(runs: int, epochs: int) -> dict:
    return {
        "name": "bench-ray-ddpm",
        "dataset": {"name": "mnist5k"},
        "generator": {"name": "ddpm", "preset": "cpu", "epochs": epochs},
        "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 500, "n_synthetic": 500},
        "metrics": {"k": 5, "n_eval": 500},
        "resources": {"num_cpus": 1},
        "sweep": {"seed": list(range(runs))},
    }


def sweep(spec: dict, out: str, use_ray: bool, workers: int | None = None):
    from madlab.runner import Runner
    from madlab.specs import build_spec

    start = time.perf_counter()
    summary = Runner(build_spec(spec), out, use_ray=use_ray, workers=workers,
                     stream=open(os.devnull, "w")).run()
    assert not summary.failed, [o.error for o in summary.failed]
    return time.perf_counter() - start, summary


def overhead(label: str, wall: float, workers: int, summary, project: int = 10) -> None:
    outcomes = summary.outcomes
    runs = len(outcomes)
    gens = sum(o.generations_run for o in outcomes)
    compute = sum(o.compute for o in outcomes)
    phases = {}
    for o in outcomes:
        for phase, seconds in o.timings.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    per_gen = compute / gens
    step_overhead = phases.get("data", 0.0) + phases.get("publish", 0.0)
    per_run_fixed = sum(o.seconds for o in outcomes) - sum(phases.values())
    in_worker = sum(o.seconds for o in outcomes) - compute
    ray_side = wall * workers - sum(o.seconds for o in outcomes)
    print(f"  {label}: {runs} runs, {gens} generations, fit+sample+metrics {per_gen:.2f} s/generation "
          f"({', '.join(f'{k} {v / gens:.3f}' for k, v in sorted(phases.items()))})")
    print(f"    per generation (data + publish)         {step_overhead / gens * 1000:8.1f} ms = "
          f"{step_overhead / compute:6.2%}   goal < 2%")
    print(f"    per run, once (imports, dataset, rows)  {per_run_fixed / runs:8.2f} s")
    print(f"    per sweep, Ray side (worker start-up, dispatch, idle tail over {workers} workers) "
          f"{ray_side:6.1f} s")
    print(f"    measured total: in the worker {in_worker / compute:6.2%}, end to end "
          f"{(wall * workers - compute) / compute:6.2%} of fit+sample+metrics")
    projected = (step_overhead / gens * project + per_run_fixed / runs + ray_side / runs) / (per_gen * project)
    print(f"    projected for {project}-generation runs of this size: {projected:6.2%} end to end")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def _spin_work(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def _pool_speedup(cores: int, work, arg, warm) -> float:
    """Serial / parallel time of ``cores`` copies of ``work(arg)`` in bare spawned processes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(cores) as pool:
        pool.map(*warm)  # start the processes (and their imports) outside the timing
        start = time.perf_counter()
        pool.map(work, [arg] * cores, chunksize=1)
        parallel = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(cores):
            pool.apply(work, (arg,))
        serial = time.perf_counter() - start
    return serial / parallel


def machine_parallelism(cores: int, n: int = 20_000_000) -> float:
    """Speed-up that bare processes get right now: the ceiling for any runner under this load."""
    return _pool_speedup(cores, _spin_work, n, (_spin, [0.1] * cores))


def _torch_work(steps: int) -> float:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(256, 2)
    for _ in range(steps):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 0.0


def torch_parallelism(cores: int, steps: int = 4000) -> float:
    """The same ceiling for small single-threaded torch training loops (what the runs do)."""
    return _pool_speedup(cores, _torch_work, steps, (_torch_work, [10] * cores))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=200,
                        help="flow training epochs (sets the run length; 200 ~ 4 s generations here)")
    parser.add_argument("--image-runs", type=int, default=2)
    parser.add_argument("--image-epochs", type=int, default=5)
    parser.add_argument("--skip-image", action="store_true")
    parser.add_argument("--only-image", action="store_true", help="skip the parallel-efficiency part")
    args = parser.parse_args()

    import logging

    import ray
    import torch

    torch.set_num_threads(1)
    cores = os.cpu_count()
    load_before = os.getloadavg()
    if args.only_image:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("RAY_worker_niceness", "0")  # as madlab's runner starts its local Ray (runner/ray_tasks.py)
            ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR)
            print("scheduling overhead per generation (time not in fit/sample/metrics)")
            t_img, summary = sweep(ddpm_spec(args.image_runs, args.image_epochs), f"{tmp}/ddpm", use_ray=True)
            overhead(f"ddpm mnist5k (image, {args.image_runs} runs)", t_img, min(cores, args.image_runs), summary)
            ray.shutdown()
        return
    ceiling_before = machine_parallelism(cores)
    torch_before = torch_parallelism(cores)
    with tempfile.TemporaryDirectory() as tmp:
        t_seq, seq = sweep(flow_spec(args.runs, args.epochs), f"{tmp}/seq", use_ray=False)
        start = time.perf_counter()
        os.environ.setdefault("RAY_worker_niceness", "0")  # as madlab's runner starts its local Ray (runner/ray_tasks.py)
        ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR)
        t_init = time.perf_counter() - start
        t_ray, summary = sweep(flow_spec(args.runs, args.epochs), f"{tmp}/ray", use_ray=True)
        load_after = os.getloadavg()
        ceiling_after = machine_parallelism(cores)
        torch_after = torch_parallelism(cores)
        print(f"{args.runs} CPU-bound runs (flow on rosenbrock, 2 generations, 1 thread each), {cores} cores")
        print(f"  load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}"
              f"  after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}"
              f"  (other processes; {cores:.0f} = machine fully busy)")
        print(f"  bare {cores}-process speed-up on this machine now: x{ceiling_before:.2f} before, "
              f"x{ceiling_after:.2f} after (the ceiling under this load)")
        print(f"  bare {cores}-process speed-up of small torch training loops: x{torch_before:.2f} before, "
              f"x{torch_after:.2f} after (the ceiling for this kind of work)")
        seq_gen = sum(o.compute for o in seq.outcomes) / sum(o.generations_run for o in seq.outcomes)
        ray_gen = sum(o.compute for o in summary.outcomes) / sum(o.generations_run for o in summary.outcomes)
        print(f"  one after another, one process  {t_seq:7.1f} s   ({seq_gen:.2f} s/generation of fit+sample+metrics)")
        print(f"  Ray runner, {cores} workers         {t_ray:7.1f} s   speed-up x{t_seq / t_ray:.2f} "
              f"(goal >= 1.70; ideal x{cores})   [ray.init {t_init:.1f} s, not counted]")
        print(f"  ({ray_gen:.2f} s/generation in the workers; parallel efficiency vs the bare ceiling "
              f"{t_seq / t_ray / max(ceiling_before, ceiling_after):.0%}, vs the torch ceiling "
              f"{t_seq / t_ray / max(torch_before, torch_after):.0%})")
        print("scheduling overhead per generation (time not in fit/sample/metrics)")
        overhead(f"flow ({seq_gen:.0f} s generations)", t_ray, cores, summary)
        if not args.skip_image:
            t_img, summary = sweep(ddpm_spec(args.image_runs, args.image_epochs), f"{tmp}/ddpm", use_ray=True)
            overhead(f"ddpm mnist5k (image, {args.image_runs} runs)", t_img, min(cores, args.image_runs), summary)
        ray.shutdown()


if __name__ == "__main__":
    main()
