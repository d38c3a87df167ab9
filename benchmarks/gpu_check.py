"""One prepared check of everything madlab does on a GPU, in at most 7 minutes of wall time.

    python benchmarks/gpu_check.py OUTDIR            # on the GPU machine (see benchmarks/README.md)
    python benchmarks/gpu_check.py OUTDIR --smoke    # the same steps on CPU at toy sizes (checks the script)

Steps, each in its own process with its own time limit, so that a failure (an exception, a CUDA
error, a hang) is recorded and the next step still runs:

1. ``device``      — torch/CUDA versions, device name, memory, compute capability.
2. ``pytest``      — the tests marked ``gpu`` with ``--device cuda`` (generators' bf16/compile/EMA/
                     checkpoint paths, DINOv2 extractor) on the real CUDA branches.
3. ``gen-gan``, ``gen-flow``, ``gen-ddpm`` — each family at its ``gpu`` preset on mnist5k: the same
   number of optimizer steps through madlab's ``fit`` in fp32 and in bf16 and through a bare PyTorch
   loop (``bench_generators.py``'s), after a warm-up; images/s, overhead ratio, model FLOP utilisation
   (FLOPs of one step counted by ``torch.utils.flop_counter`` over the measured step time, against the
   device's dense peak), peak memory, sampling throughput, and the projected time of one whole
   generation at the preset. ``compile-*`` (last, as compiling may run long): the same in bf16 +
   ``torch.compile``, with the compile time (first call) apart.
4. ``ray-fractional`` — 4 GAN runs at ``resources.num_gpus: 0.25`` through the Ray runner vs the
   same 4 runs one after another in one process (speed-up), peak GPU memory of each worker process
   (``nvidia-smi``), which must stay under its quarter of the card (the per-process memory cap).
5. ``extractors``  — LeNet, Inception and DINOv2 ViT-L/14 (random weights: nothing is downloaded)
   on 10k MNIST-sized images: images/s.

Without CUDA every step but ``device`` reports ``no CUDA: skipped`` (``--smoke`` runs them on CPU at
toy sizes instead). Output: ``OUTDIR/gpu_check.json`` (everything) and ``OUTDIR/summary.txt``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: step -> wall-clock limit (s), start-up of the step's process included; they sum to 7 minutes, and a
#: global deadline (TOTAL_S) cuts the last steps short if earlier ones ran long
STEPS = {"device": 15, "pytest": 60, "gen-gan": 30, "gen-flow": 35, "gen-ddpm": 40, "ray-fractional": 50,
         "extractors": 40, "compile-gan": 40, "compile-flow": 50, "compile-ddpm": 60}
TOTAL_S = 420
#: dense peak TFLOP/s by device-name fragment (vendor datasheets): bf16, fp32 (non-tensor-core)
PEAKS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L40S": (362.0, 91.6),
         "A10G": (125.0, 31.2), "L4": (121.0, 30.3)}
SKIPPED = "no CUDA: skipped"


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------- the steps

def step_device(args) -> dict:
    import torch

    out = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(name=props.name, capability=f"{props.major}.{props.minor}", memory_gib=props.total_memory / 2**30,
                   cuda=torch.version.cuda, count=torch.cuda.device_count())
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError as err:
        out["ray"] = f"missing ({err})"
    return out


def step_pytest(args) -> dict:
    if not cuda() and not args.smoke:
        return {"status": SKIPPED}
    device = "cuda" if cuda() else "cpu"
    tests = ["tests/test_gpu_paths.py", "tests/test_dinov2.py"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "gpu and not slow",
           "--device", device, *tests]
    if args.smoke:
        cmd += ["-k", "preset or registered"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=STEPS["pytest"] - 10)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return {"device": device, "returncode": proc.returncode, "summary": tail[-1] if tail else "", "tail": tail[-15:]}


def _peak_tflops(bf16: bool) -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, (peak_bf16, peak_fp32) in PEAKS.items():
        if key in name:
            return peak_bf16 if bf16 else peak_fp32
    return None


def _flops_per_step(name, gen, bare, x, y) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        bare(gen, x, y, 1)
    return float(counter.get_total_flops())


def step_generator(args, name: str, compiled: bool) -> dict:
    if not cuda() and not args.smoke:
        return {"status": SKIPPED}
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_generators import BARE, fit_plan

    from madlab.datasets import get_dataset_class
    from madlab.plugins.registry import get_generator_class
    from madlab.plugins.torch import COMPILE_BACKEND_ENV, GPU_PATHS_ON_CPU_ENV

    if args.smoke:  # toy sizes on CPU: checks this code, measures nothing
        os.environ[GPU_PATHS_ON_CPU_ENV], os.environ[COMPILE_BACKEND_ENV] = "1", "aot_eager"
    device = "cuda" if cuda() else "cpu"
    dataset_cls = get_dataset_class("mnist5k")
    dataset = dataset_cls(dataset_cls.Params())
    n_train = 256 if args.smoke else 5000
    data = dataset.draw(n_train, seed=0)
    cls = get_generator_class(name)
    preset = cls.Params(preset="gpu").resolved("image")
    steps = 3 if args.smoke else {"gan": 200, "flow": 60, "ddpm": 60}[name]
    batch = 16 if args.smoke else preset.batch_size
    shrink = {"gan": {"width": 8}, "flow": {"hidden": 8, "layers": 1, "top_layers": 1},
              "ddpm": {"channels": (8, 16, 16), "norm_groups": 4, "sample_steps": 2}}[name] if args.smoke else {}
    extra, steps = fit_plan(name, steps, batch, n_train)
    out = {"device": device, "preset": "gpu", "steps": steps, "batch_size": batch, "n_train": n_train, "variants": {}}

    def make(amp, compile_):
        params = cls.Params(preset="gpu", amp=amp, compile=compile_, **extra, **shrink)
        return cls(params, data_shape=dataset.shape, num_classes=dataset.num_classes, device=device)

    def timed_fit(amp, compile_, seed):
        gen = make(amp, compile_)
        gen._ensure_built(seed)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        gen.fit(data, seed=seed)
        sync()
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        return time.perf_counter() - start, gen, peak

    variants = (("bf16+compile", True, True),) if compiled else (("fp32", False, False), ("bf16", True, False))
    for label, amp, compile_ in variants:
        first, gen, _ = timed_fit(amp, compile_, 0)  # warm-up; with compile, this is the compile time
        seconds, gen, peak = timed_fit(amp, compile_, 1)
        row = {"seconds": seconds, "first_call_seconds": first, "train_img_s": steps * batch / seconds,
               "peak_mib": peak}
        if not compile_:
            x = torch.as_tensor(data.x, device=gen.torch_device)
            y = None if data.y is None else torch.as_tensor(data.y, device=gen.torch_device)
            bare = BARE[name]
            with torch.autocast(gen.torch_device.type, dtype=torch.bfloat16, enabled=amp and device == "cuda"):
                flops = _flops_per_step(name, gen, bare, x, y)
            bare(gen, x, y, 2)
            sync()
            start = time.perf_counter()
            bare(gen, x, y, steps)
            sync()
            row["bare_seconds"] = time.perf_counter() - start
            row["overhead"] = seconds / row["bare_seconds"] - 1
            row["flops_per_step"] = flops
            peak_tflops = _peak_tflops(amp)
            row["mfu"] = flops * steps / seconds / (peak_tflops * 1e12) if peak_tflops else None
        n_sample = 64 if args.smoke else 1000
        gen.sample(8, bias=1.0, seed=0)
        sync()
        start = time.perf_counter()
        gen.sample(n_sample, bias=1.0, seed=1)
        sync()
        row["sample_img_s"] = n_sample / (time.perf_counter() - start)
        out["variants"][label] = row
    full = cls.Params(preset="gpu").resolved("image")
    full_steps = full.steps if getattr(full, "steps", None) else full.epochs * max(1, n_train // full.batch_size)
    fastest = min(out["variants"].values(), key=lambda r: r["seconds"])
    out["projected_generation_seconds"] = (full_steps / steps) * fastest["seconds"] + 1000 / fastest["sample_img_s"]
    out["full_preset_steps"] = full_steps
    return out


def _gpu_memory_sampler(peaks: dict, stop: threading.Event) -> None:
    """Per-process peak GPU memory (MiB) from nvidia-smi, sampled every 0.2 s."""
    while not stop.is_set():
        try:
            text = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=5).stdout
            for line in text.strip().splitlines():
                pid, used = (int(v) for v in line.split(","))
                peaks[pid] = max(peaks.get(pid, 0), used)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        stop.wait(0.2)


def step_ray_fractional(args) -> dict:
    if not cuda() and not args.smoke:
        return {"status": SKIPPED}
    import ray
    import torch

    from madlab.runner import Runner
    from madlab.specs import build_spec
    from madlab.store.table import read_table

    steps = 5 if args.smoke else 600
    spec = {"name": "gpu-check", "dataset": {"name": "mnist5k"},
            "generator": {"name": "gan", "preset": "gpu", "steps": steps, **({"width": 8} if args.smoke else {})},
            "loop": {"scheme": "fully-synthetic", "generations": 1, "n_real": 1000, "n_synthetic": 500},
            "metrics": {"names": ["fid", "precision", "recall"]},
            "resources": {"num_gpus": 0.25, "num_cpus": 1}, "sweep": {"seed": [0, 1, 2, 3]}}
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-ray-"))
    devnull = open(os.devnull, "w")
    start = time.perf_counter()
    Runner(build_spec(spec), str(tmp / "serial"), use_ray=False, stream=devnull).run()
    serial = time.perf_counter() - start
    peaks: dict[int, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_gpu_memory_sampler, args=(peaks, stop), daemon=True)
    if torch.cuda.is_available():
        sampler.start()
    ray.init(num_gpus=1 if torch.cuda.is_available() else 1, include_dashboard=False, num_cpus=os.cpu_count())
    start = time.perf_counter()
    summary = Runner(build_spec(spec), str(tmp / "ray"), stream=devnull).run()
    parallel = time.perf_counter() - start
    stop.set()
    ray.shutdown()
    same = read_table(tmp / "serial").equals(read_table(tmp / "ray"))
    total_mib = torch.cuda.get_device_properties(0).total_memory / 2**20 if torch.cuda.is_available() else None
    workers = {pid: mib for pid, mib in peaks.items() if pid != os.getpid()}
    return {"runs": 4, "num_gpus": 0.25, "serial_seconds": serial, "ray_seconds": parallel,
            "speedup": serial / parallel, "failed": [o.error for o in summary.failed], "tables_identical": same,
            "worker_peak_mib": workers, "card_mib": total_mib,
            "under_quarter_cap": None if total_mib is None or not workers else max(workers.values()) <= total_mib / 4}


def step_extractors(args) -> dict:
    if not cuda() and not args.smoke:
        return {"status": SKIPPED}
    from unittest import mock

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from madlab.datasets.images import load_mnist5k
    from madlab.features import create_extractor, extract_features, feature_extractor_dinov2 as D
    from madlab.features.feature_extractor_lenet import LeNet

    device = "cuda" if cuda() else "cpu"
    n = 20 if args.smoke else 10_000
    images = load_mnist5k()[0]
    images = np.concatenate([images] * (-(-n // len(images))))[:n]
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-extractors-"))
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in LeNet().state_dict().items()}, str(tmp / "lenet.safetensors"))
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            mock.patch.object(tfi.torch, "load", lambda *a, **k: {}):
        state = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
    torch.save(state.state_dict(), tmp / "inception.pth")
    dinov2 = "dinov2-vitb14" if args.smoke else "dinov2-vitl14"
    overrides = {"depth": 2, "embed_dim": 96, "num_heads": 2} if args.smoke else {}
    D.MODEL_OVERRIDES[dinov2] = overrides
    save_file({k: v.contiguous() for k, v in D.build_model(dinov2).state_dict().items()}, str(tmp / "dinov2.safetensors"))
    out = {"device": device, "images": n}
    for name, path in (("lenet-mnist", "lenet.safetensors"), ("inception", "inception.pth"), (dinov2, "dinov2.safetensors")):
        ext = create_extractor(name, weights_path=str(tmp / path), device=device)
        extract_features(ext, images[:100])
        sync()
        start = time.perf_counter()
        feats = extract_features(ext, images)
        sync()
        seconds = time.perf_counter() - start
        out[name] = {"seconds": seconds, "img_s": n / seconds, "dim": int(feats.shape[1]),
                     "finite": bool(np.isfinite(feats).all())}
    return out


RUNNERS = {"device": step_device, "pytest": step_pytest, "ray-fractional": step_ray_fractional,
           "extractors": step_extractors,
           **{f"gen-{g}": (lambda a, g=g: step_generator(a, g, False)) for g in ("gan", "flow", "ddpm")},
           **{f"compile-{g}": (lambda a, g=g: step_generator(a, g, True)) for g in ("gan", "flow", "ddpm")}}


# ----------------------------------------------------------------------------------- orchestration

def run_step(name: str, step_dir: Path, smoke: bool, left: float) -> dict:
    """One step in its own process, under its time limit; whatever happens is recorded.

    The step writes its result into ``step_dir`` (a temporary folder: the GPU machine sends back at
    most 8 files, so OUTDIR holds only gpu_check.json and summary.txt, plus the wrapper's log)."""
    result_file = step_dir / f"step-{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), str(step_dir), "--step", name] + (["--smoke"] if smoke else [])
    limit = STEPS[name] * 6 if smoke else max(1, int(min(STEPS[name], left)))  # smoke: CPU, checks code, not speed
    if left < 5 and not smoke:
        return {"ok": False, "wall_s": 0.0, "error": f"not run: the {TOTAL_S}s budget is spent"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")})
        wall = time.perf_counter() - start
        if proc.returncode == 0 and result_file.is_file():
            return {"ok": True, "wall_s": wall, **json.loads(result_file.read_text())}
        return {"ok": False, "wall_s": wall, "error": f"exit {proc.returncode}", "tail": (proc.stdout + proc.stderr)[-3000:]}
    except subprocess.TimeoutExpired as exc:
        parts = [p.decode(errors="replace") if isinstance(p, bytes) else p for p in (exc.stdout, exc.stderr) if p]
        tail = "".join(parts)  # TimeoutExpired holds bytes even with text=True
        return {"ok": False, "wall_s": time.perf_counter() - start, "error": f"timed out after {limit}s", "tail": tail[-3000:]}


def summarise(results: dict) -> str:
    lines = [f"madlab gpu_check  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  total {results['wall_s']:.0f}s"]
    dev = results["steps"].get("device", {})
    lines.append(f"device: {dev.get('name', 'no CUDA')}  torch {dev.get('torch')}  cuda {dev.get('cuda')}  ray {dev.get('ray')}")
    for name, step in results["steps"].items():
        if name == "device":
            continue
        head = f"{name:<15} {step.get('wall_s', 0):6.1f}s  "
        if not step.get("ok"):
            lines.append(head + f"FAILED: {step.get('error')}")
        elif step.get("status"):
            lines.append(head + step["status"])
        elif name == "pytest":
            lines.append(head + f"{step['summary']} (rc {step['returncode']}, --device {step['device']})")
        elif name.startswith(("gen-", "compile-")):
            parts = []
            for label, row in step["variants"].items():
                extra = f", overhead {row['overhead']:+.1%}, MFU {row['mfu']:.1%}" if row.get("mfu") is not None else (
                    f", overhead {row['overhead']:+.1%}" if "overhead" in row else f", first call {row['first_call_seconds']:.0f}s")
                peak = f", peak {row['peak_mib']:.0f} MiB" if row.get("peak_mib") else ""
                parts.append(f"{label}: {row['train_img_s']:.0f} img/s{extra}{peak}")
            lines.append(head + "; ".join(parts) + f"; one gpu-preset generation ~{step['projected_generation_seconds']:.0f}s")
        elif name == "ray-fractional":
            lines.append(head + f"4 runs at 0.25 GPU: x{step['speedup']:.2f} vs serial ({step['serial_seconds']:.0f}s -> "
                                f"{step['ray_seconds']:.0f}s), tables identical {step['tables_identical']}, worker peaks "
                                f"{sorted(step['worker_peak_mib'].values())} MiB, under quarter cap {step['under_quarter_cap']}")
        elif name == "extractors":
            lines.append(head + ", ".join(f"{k}: {v['img_s']:.0f} img/s" for k, v in step.items() if isinstance(v, dict))
                         + f" ({step['images']} images)")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--smoke", action="store_true", help="run the CUDA steps on CPU at toy sizes (checks the script)")
    ap.add_argument("--step", choices=list(STEPS), help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="+", choices=list(STEPS), help="run these steps only")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.step:  # inside one step's process
        result = RUNNERS[args.step](args)
        (out_dir / f"step-{args.step}.json").write_text(json.dumps(result, indent=1, default=str))
        return 0
    start = time.perf_counter()
    step_dir = Path(tempfile.mkdtemp(prefix="gpu-check-steps-"))
    results = {"smoke": args.smoke, "steps": {}}
    for name in args.only or STEPS:
        results["steps"][name] = run_step(name, step_dir, args.smoke, TOTAL_S - (time.perf_counter() - start))
        step = results["steps"][name]
        print(f"[gpu_check] {name}: {'ok' if step['ok'] else 'FAILED ' + step['error']} ({step['wall_s']:.1f}s)"
              + (f" {step['status']}" if step.get("status") else ""), flush=True)
        results["wall_s"] = time.perf_counter() - start
        (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))  # after every step
    summary = summarise(results)
    (out_dir / "summary.txt").write_text(summary)
    print(summary, end="")
    return 0 if all(s["ok"] for s in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
