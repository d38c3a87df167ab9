"""Normalizing-flow generator on normflows: RealNVP or a neural spline flow for 2-D data, multiscale Glow for images.

Sampling bias λ is the base-distribution temperature in MAD's form z ~ N(0, λI): the base
noise is scaled by sqrt(λ) (for Glow's learned per-channel base Gaussians, the standard
deviation around the learned mean), then pushed through the flow.

2-D: ``coupling: affine`` is MAD Appendix B.4's RealNVP (8 affine couplings, hidden 64; ``paper``:
20 epochs of batch 256) with soft-clamped log-scales; ``coupling: spline`` (the ``cpu`` and ``gpu``
presets) is a neural spline flow, 4 rational-quadratic spline couplings (16 bins, residual MLPs of
width 64), 100 epochs of batch 100 with cosine learning-rate decay.
RealNVP fails the 2-D quality floor at every budget tried (benchmarks/README.md, *Generator presets: flow*).
An affine coupling moves and scales a coordinate as a whole, so it spreads mass between the narrow
modes (std 0.05, spacing 2); a monotone spline can place five peaks in one coordinate.
Images: normflows' multiscale Glow with logit
pre-processing. ``n_bits`` (Glow's reduced bit depth): training pixels are quantised to
2^n_bits levels k and dequantised uniformly within their bin, (k + U) / 2^n_bits; samples are
rounded back to those levels, so they take only 2^n_bits values (MNIST is near-binary, and
3 bits drop the 8-bit grey-level noise the flow otherwise spends its capacity on).
``coupling``: ``sigmoid_inv`` (sampling multiplies by the scales, so an under-trained model
cannot overflow), Glow's ``sigmoid``, ``additive``, or ``exp`` with the log-scale soft-clamped
to (-3, 3) as in the 2-D RealNVP, which stayed finite at learning rates where ``sigmoid_inv``
went NaN. ``top_layers`` puts extra blocks on the coarsest (7x7) level, which sees whole digits
and costs about a third of a 14x14 block.

The presets' measurements (gmm25 and mnist5k quality, fit times, what was tried and did not help)
are in benchmarks/README.md, *Generator presets: flow*.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal

import normflows as nf
import torch
from pydantic import Field

from madlab.core.errors import ConfigError, RunFailed
from madlab.plugins.torch import (NeuralParams, TorchGenerator, autocast, epoch_batches, load_module_state,
                                  load_optimizer_state, maybe_compile, module_state, optimizer_state, randn, sqrt_bias,
                                  tensors_to_samples)


class SoftClampedScale(torch.nn.Module):
    """Wraps a coupling's parameter map so each log-scale is soft-clamped to (-bound, bound).

    RealNVP's ``exp`` scale is unbounded: on sharply peaked data (gmm25's modes have std 0.05)
    maximum likelihood keeps inflating it until the loss overflows. normflows' maps put the
    shift in the even and the log-scale in the odd output channels; ``bound * tanh(s / bound)``
    leaves small scales untouched (the soft clamp of later flow implementations).
    """

    def __init__(self, param_map: torch.nn.Module, bound: float = 3.0):
        super().__init__()
        self.param_map, self.bound = param_map, bound

    def forward(self, x):
        param = self.param_map(x)
        shift, log_scale = param[:, 0::2], param[:, 1::2]
        log_scale = self.bound * torch.tanh(log_scale / self.bound)
        return torch.stack([shift, log_scale], 2).flatten(1, 2)


def realnvp(dim: int, layers: int, hidden: int) -> nf.NormalizingFlow:
    """RealNVP (Dinh et al. 2017) as in MAD Appendix B.4: affine couplings with MLP maps + swaps.

    Each coupling is followed by an ActNorm (Glow-style), which keeps deep stacks stable.
    """
    flows = []
    half = dim // 2
    for _ in range(layers):
        param_map = SoftClampedScale(nf.nets.MLP([dim - half, hidden, hidden, 2 * half], init_zeros=True))
        flows += [nf.flows.AffineCouplingBlock(param_map), nf.flows.Permute(dim, mode="swap"),
                  nf.flows.ActNorm(dim)]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def spline_flow(dim: int, layers: int, hidden: int, bins: int, tail_bound: float = 3.0) -> nf.NormalizingFlow:
    """Neural spline flow (Durkan et al. 2019): normflows' rational-quadratic spline couplings.

    Each coupling transforms half of the coordinates by a monotone piecewise rational-quadratic map
    with ``bins`` bins on [-tail_bound, tail_bound] (linear tails outside), whose knots a residual MLP
    (2 blocks of ``hidden`` units) predicts from the other half; the masks alternate. A spline can
    put several narrow peaks into one coordinate, which an affine coupling cannot: on gmm25 (modes
    of std 0.05, 2 apart, i.e. 0.018 in standardised units) RealNVP spreads its mass between the
    modes while 4 spline couplings put >= 89 % of their samples on a mode (see the module docstring).
    """
    flows = [nf.flows.CoupledRationalQuadraticSpline(dim, 2, hidden, num_bins=bins, tail_bound=tail_bound,
                                                     reverse_mask=bool(i % 2)) for i in range(layers)]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def _levels(shape: tuple[int, int, int], wanted: int) -> int:
    c, h, w = shape
    levels = 0
    while levels < wanted and h % 2 ** (levels + 1) == 0 and w % 2 ** (levels + 1) == 0:
        levels += 1
    return levels


def glow_block(channels: int, hidden: int, coupling: str) -> nf.flows.GlowBlock:
    """normflows' GlowBlock (affine coupling, invertible 1x1 conv, ActNorm); ``exp`` soft-clamps the log-scale."""
    block = nf.flows.GlowBlock(channels, hidden, split_mode="channel", scale=coupling != "additive",
                               scale_map="sigmoid_inv" if coupling == "additive" else coupling)
    if coupling == "exp":
        affine = block.flows[0].flows[1]
        affine.param_map = SoftClampedScale(affine.param_map)
    return block


def glow(shape: tuple[int, int, int], levels: int, blocks: int, hidden: int,
         logit: float = 0.0, coupling: str = "sigmoid_inv", top_blocks: int | None = None) -> nf.MultiscaleFlow:
    """Multiscale Glow (Kingma & Dhariwal 2018) built as in normflows' Glow example.

    ``logit`` > 0 adds RealNVP's logit pre-processing of [0, 1] pixels (that alpha), which lets
    the flow model the saturated black/white pixels of digits without huge log-determinants.
    ``coupling``: normflows' affine scale map (``sigmoid_inv``, ``sigmoid``, ``exp``) or
    ``additive`` (NICE/Glow's shift-only coupling). ``top_blocks``: blocks at the coarsest level
    (default ``blocks``), which sees the whole digit and costs a quarter of the finer level per block.
    """
    c, h, w = shape
    L = levels
    q0, merges, flows = [], [], []
    for i in range(L):
        n_blocks = top_blocks if i == 0 and top_blocks else blocks
        level = [glow_block(c * 2 ** (L + 1 - i), hidden, coupling) for _ in range(n_blocks)]
        flows.append(level + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (L - i), h // 2 ** (L - i), w // 2 ** (L - i))
        else:
            latent = (c * 2 ** (L + 1), h // 2**L, w // 2**L)
        q0.append(nf.distributions.GlowBase(latent))
    transform = nf.transforms.Logit(alpha=logit) if logit > 0 else None
    return nf.MultiscaleFlow(q0, flows, merges, transform=transform, class_cond=False)


class FlowGenerator(TorchGenerator):
    """Normalizing flow (normflows): RealNVP on 2-D data, multiscale Glow on images; λ: z ~ N(0, λI)."""

    name = "flow"
    data_kinds = frozenset({"vector", "image"})
    min_fit_samples = 2

    class Params(NeuralParams):
        layers: int | None = Field(None, ge=1, description="coupling layers (2-D) / Glow blocks per level (images)")
        top_layers: int | None = Field(None, ge=1, description="images: Glow blocks at the coarsest level")
        hidden: int | None = Field(None, ge=1, description="hidden units (2-D) / conv channels (images)")
        levels: int | None = Field(None, ge=1, le=6, description="Glow levels (images)")
        epochs: int | None = Field(None, ge=1)
        batch_size: int | None = Field(None, ge=1)
        lr: float | None = Field(None, gt=0)
        weight_decay: float = Field(0.0, ge=0)
        grad_clip: float = Field(100.0, gt=0)
        logit: float = Field(0.05, ge=0, lt=0.5, description="images: logit pre-processing alpha; 0 = off")
        n_bits: int | None = Field(None, ge=1, le=8, description="images: bit depth the flow models (Glow's n_bits)")
        coupling: Literal["sigmoid_inv", "sigmoid", "exp", "additive", "affine", "spline"] | None = Field(
            None, description="images: Glow coupling scale map (sigmoid_inv, sigmoid, exp) or additive (shift only); "
                              "2-D: affine (RealNVP) or spline (rational-quadratic neural spline flow)")
        bins: int | None = Field(None, ge=2, le=128, description="2-D spline coupling: spline bins")
        warmup: int | None = Field(None, ge=0, description="linear learning-rate warm-up steps")
        cosine: bool | None = Field(None, description="cosine learning-rate decay to 0 over each fit")

        PRESETS: ClassVar = {
            "cpu": {
                # gmm25, 1,000 points: precision 0.89-0.93, high-quality fraction 0.90-0.94, 25 modes (seeds
                # 0-2), ~40 s per fit on one thread; see the docstring.
                "vector": dict(coupling="spline", layers=4, hidden=64, bins=16, epochs=100, batch_size=100, lr=1e-3,
                               warmup=0, cosine=True),
                # mnist5k: LeNet-FID/noise-FID 0.17-0.18 at 20 epochs, 0.21-0.23 at 10 (old 4x32, 8-bit,
                # 4-epoch preset: 0.79); see the docstring.
                "image": dict(layers=8, top_layers=20, hidden=64, levels=2, epochs=20, batch_size=64, lr=3e-3,
                              n_bits=3, coupling="exp", warmup=300, cosine=False),
            },
            # Between cpu and paper: the cpu recipe (exp coupling, warm-up) at twice the width and 5 bits;
            # ~1 min per generation of 5k digits on a datacenter GPU (estimated, not yet timed).
            "gpu": {
                "vector": dict(coupling="spline", layers=4, hidden=64, bins=16, epochs=100, batch_size=100, lr=1e-3,
                               warmup=0, cosine=True),
                "image": dict(layers=8, top_layers=16, hidden=128, levels=2, epochs=40, batch_size=64, lr=1e-3,
                              n_bits=5, coupling="exp", warmup=300, cosine=False),
            },
            # Glow at Adam 1e-3 diverged (NaN likelihood in the first epoch) at hidden 64 on mnist5k; 5e-4 did not.
            "paper": {
                # MAD Appendix B.4: 8 coupling layers, hidden 64, 20 epochs, batch 256.
                "vector": dict(coupling="affine", layers=8, hidden=64, bins=16, epochs=20, batch_size=256, lr=1e-3,
                               warmup=0, cosine=False),
                "image": dict(layers=16, top_layers=16, hidden=256, levels=2, epochs=100, batch_size=64, lr=5e-4,
                              n_bits=8, coupling="sigmoid_inv", warmup=0, cosine=False),
            },
        }

    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        super().check(params, data_shape=data_shape, num_classes=num_classes)
        image = len(data_shape) == 3
        if image and _levels(tuple(data_shape), params.levels) == 0:
            raise ConfigError(f"generator.levels: image side {tuple(data_shape[1:])} must be even for Glow's squeeze")
        allowed = ("sigmoid_inv", "sigmoid", "exp", "additive") if image else ("affine", "spline")
        if params.coupling not in allowed:
            raise ConfigError(f"generator.coupling: {params.coupling!r} is not a coupling for "
                              f"{'image' if image else '2-D'} data (one of {', '.join(allowed)})")
        if not image and data_shape[0] < 2:
            raise ConfigError(f"generator: a coupling flow needs at least 2 dimensions, the data have {data_shape[0]}")

    def _build(self):
        p = self.p
        if self.kind == "vector":
            self.model = (spline_flow(self.data_shape[0], p.layers, p.hidden, p.bins) if p.coupling == "spline"
                          else realnvp(self.data_shape[0], p.layers, p.hidden))
            dim = self.data_shape[0]
        else:
            levels = _levels(self.data_shape, p.levels)
            self.model = glow(self.data_shape, levels, p.layers, p.hidden, p.logit, p.coupling, p.top_layers)
            dim = 1
        self.model.to(self.torch_device)
        self.data_mean = torch.zeros(dim, device=self.torch_device)
        self.data_std = torch.ones(dim, device=self.torch_device)
        self.standardised = False
        self.steps = 0
        self.opt = torch.optim.Adam(self.model.parameters(), lr=p.lr, weight_decay=p.weight_decay)

    def _to_flow_space(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Images: [-1, 1] -> [0, 1], quantised to ``n_bits`` (2^n_bits levels k) and uniformly
        dequantised within each level's bin, (k + U) / 2^n_bits (Glow); 2-D: standardise."""
        if self.kind == "image":
            bins = 2 ** self.p.n_bits
            k = torch.floor(torch.round((x + 1) * 127.5) / 2 ** (8 - self.p.n_bits))
            return (k + torch.rand(x.shape, generator=generator).to(x.device)) / bins
        return (x - self.data_mean) / self.data_std

    def _from_flow_space(self, u: torch.Tensor) -> torch.Tensor:
        """Images: the flow's [0, 1] output rounded to its ``n_bits`` level, as pixels in [-1, 1]."""
        bins = 2 ** self.p.n_bits
        k = torch.floor(u * bins).clamp(0, bins - 1)
        return k / (bins - 1) * 2 - 1

    def _train(self, x, y, generator):
        p, dev = self.p, self.torch_device
        if self.kind == "vector" and not self.standardised:
            self.data_mean, self.data_std = x.mean(0), x.std(0).clamp_min(1e-6)
            self.standardised = True
        self.model.train()
        kld = maybe_compile(self.model.forward_kld, dev, p.compile)  # shares self.model's parameters
        per_epoch = len(x) // min(p.batch_size, len(x))
        total, step = p.epochs * per_epoch, 0
        for epoch in range(p.epochs):
            for index in epoch_batches(len(x), min(p.batch_size, len(x)), generator, drop_last=True):
                batch = self._to_flow_space(x[index.to(dev)], generator)
                with autocast(dev, p.amp):
                    loss = kld(batch)
                if not torch.isfinite(loss):
                    raise RunFailed(f"flow: negative log-likelihood is {loss.item()} in epoch {epoch}")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
                if p.warmup or p.cosine:
                    lr = p.lr * min(1.0, (self.steps + 1) / p.warmup) if p.warmup else p.lr
                    if p.cosine:
                        lr *= 0.5 * (1 + math.cos(math.pi * step / total))
                    for group in self.opt.param_groups:
                        group["lr"] = lr
                self.opt.step()
                self.steps += 1
                step += 1

    def _base_sample(self, n: int, bias: float, generator):
        """Base noise at temperature λ, drawn from ``generator`` (normflows' own samplers use the global RNG)."""
        dev, std = self.torch_device, sqrt_bias(bias)
        if self.kind == "vector":
            return randn((n, self.data_shape[0]), generator, dev, std=std)
        zs = []
        for q in self.model.q0:
            loc = q.loc * torch.exp(q.loc_logs * q.logscale_factor)
            log_scale = q.log_scale * torch.exp(q.log_scale_logs * q.logscale_factor)
            zs.append(loc + torch.exp(log_scale) * randn((n,) + tuple(q.shape), generator, dev, std=std))
        return zs

    def _sample(self, n, bias, generator):
        self.model.eval()
        chunks = []
        for start in range(0, n, 1024):
            z = self._base_sample(min(1024, n - start), bias, generator)
            if self.kind == "vector":
                x = self.model.forward(z) * self.data_std + self.data_mean
            else:
                x, _ = self.model.forward_and_log_det(z)
                x = self._from_flow_space(x)
            chunks.append(x.float())
        x = torch.cat(chunks) if chunks else torch.zeros((0,) + self.data_shape)
        return tensors_to_samples(x, image=self.kind == "image")

    def log_prob(self, data) -> torch.Tensor:
        """Log-density of 2-D samples under the fitted flow (in data coordinates)."""
        x = torch.as_tensor(data.x, dtype=torch.float32, device=self.torch_device)
        z = (x - self.data_mean) / self.data_std
        return self.model.log_prob(z) - torch.log(self.data_std).sum()

    def _state(self):
        return {**module_state("model", self.model), **optimizer_state("opt", self.opt),
                "data_mean": self.data_mean.cpu(), "data_std": self.data_std.cpu(),
                "standardised": torch.tensor(self.standardised), "steps": torch.tensor(self.steps)}

    def _load(self, state):
        load_module_state("model", self.model, state)
        load_optimizer_state("opt", self.opt, state)
        self.data_mean = state["data_mean"].to(self.torch_device)
        self.data_std = state["data_std"].to(self.torch_device)
        self.standardised = bool(state["standardised"])
        self.steps = int(state["steps"]) if "steps" in state else 0


__all__ = ["FlowGenerator", "realnvp", "spline_flow", "glow"]
