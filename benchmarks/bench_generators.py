"""Training and sampling throughput of the image generators: madlab's ``fit`` vs a bare PyTorch loop.

For each image generator (ddpm, gan, flow: those installed) the same model (same class and
hyper-parameters, built by the plugin) is trained for the same number of optimizer steps on
the same mnist5k images, once through ``Generator.fit`` and once by a bare loop written the
way one would write it by hand: global-RNG noise, ``torch.randint`` batches, no seeded
generators, no helpers. The two alternate over ``--repeats`` rounds after a warm-up, so both
run under the same machine load; the table uses each side's fastest round (the least
disturbed by other processes), the JSON rows also hold the median ratio and every round's
time. Goal: madlab's overhead (fit time / bare time - 1) <= 5 %.

Sampling throughput (images/s of ``Generator.sample``) is reported beside it; for ddpm both
without guidance (λ = 1, one network pass per step) and with guidance (λ = 0.8, two).

    python benchmarks/bench_generators.py                       # cpu preset, 1 thread
    python benchmarks/bench_generators.py --device cuda --preset paper --steps 200
    python benchmarks/bench_generators.py --generators ddpm --threads 2 --json out.json

The bare loops read the plugin's modules (``model``, ``G``/``D``, optimizer settings), so a
plugin refactor that renames them breaks this script loudly rather than silently.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

IMAGE_GENERATORS = ["ddpm", "gan", "flow"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- bare loops: the same steps, written by hand ---------------------------------------------------

def bare_ddpm(gen, x, y, steps):
    """ε-prediction DDPM steps with 10 % null-class dropout, Adam, grad clipping and EMA."""
    p, dev = gen.p, gen.torch_device
    model, sched = gen.model, gen.train_scheduler
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    ema = gen.ema
    n, b = len(x), min(p.batch_size, len(x))
    model.train()
    for _ in range(steps):
        index = torch.randint(0, n, (b,), device=dev)
        x0 = x[index]
        noise = torch.randn_like(x0)
        t = torch.randint(0, p.timesteps, (b,), device=dev)
        xt = sched.add_noise(x0, noise, t)
        c = torch.where(torch.rand(b, device=dev) < p.cond_drop, gen.null_class, y[index])
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=p.amp and dev.type == "cuda"):
            pred = model(xt, t, c).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if p.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)


def bare_gan(gen, x, y, steps):
    """Non-saturating (or WGAN-GP) DCGAN steps with the plugin's G, D, Adam settings and EMA;
    class-conditional (projection discriminator) when the plugin is."""
    p, dev = gen.p, gen.torch_device
    G, D = gen.G, gen.D
    classes = getattr(gen, "classes", None)
    opt_G = torch.optim.Adam(G.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))
    n, b = len(x), min(p.batch_size, len(x))
    G.train(), D.train()
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=p.amp and dev.type == "cuda")
    for _ in range(steps):
        for _ in range(p.n_critic):
            index = torch.randint(0, n, (b,), device=dev)
            real, labels = x[index], (y[index] if classes else None)
            z = torch.randn(b, p.latent_dim, device=dev)
            with torch.autocast(**amp):
                with torch.no_grad():
                    fake = G(z, labels)
                d_real, d_fake = D(real, labels), D(fake, labels)
                loss_D = (F.softplus(-d_real).mean() + F.softplus(d_fake).mean() if p.objective == "gan"
                          else d_fake.mean() - d_real.mean())
            if p.objective == "wgan-gp" and p.gp_weight > 0:
                alpha = torch.rand(b, 1, 1, 1, device=dev)
                mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(D(mix, labels).sum(), mix, create_graph=True)
                loss_D = loss_D + p.gp_weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            if p.objective == "gan" and p.r1 > 0:
                real_ = real.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(D(real_, labels).sum(), real_, create_graph=True)
                loss_D = loss_D + p.r1 / 2 * grad.flatten(1).pow(2).sum(1).mean()
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
        z = torch.randn(b, p.latent_dim, device=dev)
        labels = torch.randint(0, classes, (b,), device=dev) if classes else None
        with torch.autocast(**amp):
            d_gen = D(G(z, labels), labels)
            loss_G = F.softplus(-d_gen).mean() if p.objective == "gan" else -d_gen.mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        if gen.ema is not None:
            gen.ema.update(G)


def bare_flow(gen, x, y, steps):
    """Maximum-likelihood Glow steps on dequantised images with the plugin's optimizer settings."""
    p, dev = gen.p, gen.torch_device
    model = gen.model
    opt = torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    n, b = len(x), min(p.batch_size, len(x))
    model.train()
    for _ in range(steps):
        u = (x[torch.randint(0, n, (b,), device=dev)] + 1) / 2
        batch = (u * 255 + torch.rand_like(u)) / 256
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=p.amp and dev.type == "cuda"):
            loss = model.forward_kld(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()


BARE = {"ddpm": bare_ddpm, "gan": bare_gan, "flow": bare_flow}


def fit_plan(name: str, steps: int, batch_size: int, n_train: int) -> tuple[dict, int]:
    """Hyper-parameters that make ``fit`` run a known number of optimizer steps, and that number.

    Step-based plugins run ``steps`` exactly; flow is epoch-based (``n_train // batch_size``
    steps per epoch), so it runs whole epochs, at least ``steps`` in all.
    """
    if name == "flow":
        per_epoch = max(1, n_train // batch_size)
        epochs = -(-steps // per_epoch)
        return {"epochs": epochs, "batch_size": batch_size}, epochs * per_epoch
    return {"steps": steps, "batch_size": batch_size}, steps


def bench_one(name, cls, dataset, args, device):
    data = dataset.draw(args.n_train, seed=0)
    extra, steps = fit_plan(name, args.steps, args.batch_size, args.n_train)
    params = cls.Params(preset=args.preset, **extra, **json.loads(args.params.get(name, "{}")))
    images_per_fit = steps * args.batch_size

    def make():
        return cls(params, data_shape=dataset.shape, num_classes=dataset.num_classes, device=device)

    def madlab_fit(seed):
        gen = make()
        gen._ensure_built(seed)  # construction is not training: build outside the clock, as the bare loop does
        _sync(gen.torch_device)
        start = time.perf_counter()
        gen.fit(data, seed=seed)
        _sync(gen.torch_device)
        return time.perf_counter() - start, gen

    def bare_fit(seed):
        gen = make()
        gen._ensure_built(seed)
        dev = gen.torch_device
        x = torch.as_tensor(data.x, device=dev)
        y = None if data.y is None else torch.as_tensor(data.y, device=dev)
        torch.manual_seed(seed)
        _sync(dev)
        start = time.perf_counter()
        BARE[name](gen, x, y, steps)
        _sync(dev)
        return time.perf_counter() - start

    madlab_fit(0), bare_fit(0)  # warm-up (allocator, lazy kernels, first-call overheads)
    t_madlab, t_bare = [], []
    gen = None
    for r in range(args.repeats):
        if r % 2 == 0:
            dt, gen = madlab_fit(r + 1)
            t_madlab.append(dt)
            t_bare.append(bare_fit(r + 1))
        else:
            t_bare.append(bare_fit(r + 1))
            dt, gen = madlab_fit(r + 1)
            t_madlab.append(dt)
    fit_s, bare_s = min(t_madlab), min(t_bare)
    row = {"generator": name, "preset": args.preset, "device": str(gen.torch_device),
           "steps": steps, "batch_size": args.batch_size,
           "train_img_s_madlab": images_per_fit / fit_s, "train_img_s_bare": images_per_fit / bare_s,
           "overhead": fit_s / bare_s - 1,
           "overhead_median": statistics.median(t_madlab) / statistics.median(t_bare) - 1,
           "seconds_madlab": t_madlab, "seconds_bare": t_bare}
    biases = [1.0, 0.8] if name == "ddpm" else [1.0]
    for bias in biases:
        gen.sample(min(args.n_sample, 8), bias=bias, seed=0)
        _sync(gen.torch_device)
        start = time.perf_counter()
        gen.sample(args.n_sample, bias=bias, seed=1)
        _sync(gen.torch_device)
        row[f"sample_img_s@{bias}"] = args.n_sample / (time.perf_counter() - start)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generators", nargs="+", default=IMAGE_GENERATORS)
    ap.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per timed fit")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-sample", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", nargs="*", default=[], metavar="GEN=JSON",
                    help="extra hyper-parameters per generator, e.g. ddpm='{\"sample_steps\": 20}'")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    args.params = dict(item.split("=", 1) for item in args.params)
    torch.set_num_threads(args.threads)

    from madlab.core.errors import ConfigError, RunFailed
    from madlab.datasets import get_dataset_class
    from madlab.plugins.registry import generator_names, get_generator_class

    dataset_cls = get_dataset_class("mnist5k")
    dataset = dataset_cls(dataset_cls.Params())
    rows = []
    for name in args.generators:
        if name not in generator_names():
            print(f"# {name}: not installed, skipped", file=sys.stderr)
            continue
        try:
            cls = get_generator_class(name)
        except (ConfigError, ImportError) as err:
            print(f"# {name}: cannot be imported ({err}), skipped", file=sys.stderr)
            continue
        try:
            row = bench_one(name, cls, dataset, args, args.device)
        except RunFailed as err:  # a diverged fit says nothing about throughput, but is worth knowing
            print(f"# {name}: a timed fit failed ({err}), skipped", file=sys.stderr)
            continue
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else [round(t, 3) for t in v] if isinstance(v, list)
                           else v) for k, v in row.items()}), flush=True)

    head = f"{'generator':<9} {'device':<6} {'train img/s madlab':>18} {'bare':>8} {'overhead':>9}  sampling img/s"
    print("\n" + head + "\n" + "-" * len(head))
    for row in rows:
        sampling = ", ".join(f"λ={k.split('@')[1]}: {v:.1f}" for k, v in row.items() if k.startswith("sample_img_s"))
        print(f"{row['generator']:<9} {row['device']:<6} {row['train_img_s_madlab']:>18.1f} "
              f"{row['train_img_s_bare']:>8.1f} {row['overhead']:>+9.1%}  {sampling}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
