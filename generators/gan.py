"""GAN generator: DCGAN for images, an MLP GAN for 2-D data; non-saturating or WGAN-GP loss.

Sampling bias λ is latent truncation in MAD's form: z ~ N(0, λI) (so λ = 1 is the training
prior and λ = 0 returns the image of the mean latent for every sample).

Presets: ``cpu`` images = class-conditional DCGAN, width 32, 1000 steps of batch 64 at Adam 5e-4;
``cpu`` 2-D = MLP GAN 128x3 with an R1 penalty of 0.1 (without it a gmm25 run can collapse to one mode),
12000 steps with generator EMA 0.999 (the averaged generator needs a converged one); ``paper`` =
MAD-scale DCGAN (width 64, 20k steps, EMA 0.999); 2-D ``gpu`` (width 256, 10,000 steps of batch 512, EMA
0.999) and ``paper`` (width 256, 20,000 steps of batch 256, no EMA). What each scores and costs, and the
variants that did worse: benchmarks/README.md, *Generator presets: gan*.
The hand-written parts (projection discriminator, PacGAN packing, R1, gradient penalty) are a
few lines each and have no maintained PyTorch package that fits a plugin this small.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from madlab.core.errors import ConfigError, RunFailed
from madlab.plugins.torch import (EMA, NeuralParams, TorchGenerator, autocast, data_kind, endless_batches,
                                  load_module_state, load_optimizer_state, maybe_compile, module_state, optimizer_state,
                                  randn, sqrt_bias, tensors_to_samples)


def _upsamplings(size: int) -> int:
    """How many stride-2 stages an image side allows (down to >= 4 pixels, at most 4)."""
    k = 0
    while k < 4 and size % 2 == 0 and size // 2 >= 4:
        size //= 2
        k += 1
    return k


class DCGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): linear to a small map, transposed convs up, tanh."""

    def __init__(self, latent_dim: int, shape: tuple[int, int, int], width: int):
        super().__init__()
        c, h, w = shape
        k = _upsamplings(min(h, w))
        if k == 0 or h % 2**k or w % 2**k:
            raise ValueError(f"gan: image side {h}x{w} must be divisible by 2 at least once down to >= 4 pixels")
        self.base = (width * 2 ** (k - 1), h // 2**k, w // 2**k)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.base[0] * self.base[1] * self.base[2], bias=False),
            nn.BatchNorm1d(self.base[0] * self.base[1] * self.base[2]), nn.ReLU(True))
        layers: list[nn.Module] = []
        channels = self.base[0]
        for stage in range(k - 1):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, c, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(self.project(z).view(-1, *self.base))


class DCFeatures(nn.Module):
    """DCGAN discriminator trunk without batch norm (WGAN-GP's gradient penalty forbids it)."""

    def __init__(self, shape: tuple[int, int, int], width: int):
        super().__init__()
        c, h, w = shape
        k = _upsamplings(min(h, w))
        layers: list[nn.Module] = []
        channels = c
        for stage in range(k):
            out = width * 2**stage
            layers += [nn.Conv2d(channels, out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            channels = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.dim = channels * (h // 2**k) * (w // 2**k)

    def forward(self, x):
        return self.body(x)


class MLPFeatures(nn.Module):
    def __init__(self, dim: int, width: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(dim if i == 0 else width, width), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.dim = width

    def forward(self, x):
        return self.body(x)


def _mlp(sizes: list[int], activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class Critic(nn.Module):
    """Discriminator head over a feature trunk: linear score, plus a projection term for labels.

    Class conditioning is the projection discriminator (Miyato & Koyama 2018):
    D(x, y) = w·h(x) + e_y·h(x). Packing is PacGAN (Lin et al. 2018): groups of ``pac``
    samples are stacked on the feature/channel axis and scored jointly, which penalises a
    generator that drops modes (its packs look alike); the trunk then sees ``pac`` x channels.
    """

    def __init__(self, features: nn.Module, num_classes: int | None = None, pac: int = 1):
        super().__init__()
        self.features, self.pac = features, pac
        self.head = nn.Linear(features.dim, 1)
        self.embed = nn.Embedding(num_classes, features.dim) if num_classes else None

    def forward(self, x, y=None):
        if self.pac > 1:
            x = x.reshape(len(x) // self.pac, x.shape[1] * self.pac, *x.shape[2:])
        h = self.features(x)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out


class ConditionalGenerator(nn.Module):
    """Feeds [z, one_hot(y)] to the network when class-conditional, z alone otherwise."""

    def __init__(self, net: nn.Module, num_classes: int | None):
        super().__init__()
        self.net, self.num_classes = net, num_classes

    def forward(self, z, y=None):
        if self.num_classes:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], 1)
        return self.net(z)


class GANGenerator(TorchGenerator):
    """GAN (DCGAN images / MLP 2-D), loss `gan` (non-saturating) or `wgan-gp`; λ: z ~ N(0, λI).

    Images are class-conditional by default when the data has labels (``conditional``: a
    projection discriminator, balanced labels at sampling, returned in ``Samples.y``); 2-D
    data are modelled unconditionally by default (gmm25's labels are its mode ids, and
    covering the modes unaided is what that benchmark measures).
    """

    name = "gan"
    data_kinds = frozenset({"vector", "image"})
    min_fit_samples = 2

    class Params(NeuralParams):
        objective: Literal["gan", "wgan-gp"] = "gan"
        latent_dim: int | None = Field(None, ge=1)
        width: int | None = Field(None, ge=1, description="base conv channels (images) / hidden units (2-D)")
        depth: int | None = Field(None, ge=1, description="hidden layers of the 2-D MLPs")
        steps: int | None = Field(None, ge=1, description="generator updates per fit")
        batch_size: int | None = Field(None, ge=1)
        lr: float | None = Field(None, gt=0)
        beta1: float | None = Field(None, ge=0, lt=1)
        beta2: float | None = Field(None, ge=0, lt=1)
        n_critic: int | None = Field(None, ge=1, description="discriminator updates per generator update")
        gp_weight: float = Field(10.0, ge=0, description="WGAN-GP gradient-penalty weight")
        r1: float | None = Field(None, ge=0, description="R1 penalty weight on real data (objective gan); 0 = off")
        pac: int | None = Field(None, ge=1, description="PacGAN packing: the discriminator judges pac samples jointly")
        conditional: bool | None = Field(None, description="class-conditional (needs labelled data); samples get "
                                                           "balanced labels")
        ema: float | None = Field(None, ge=0, lt=1, description="EMA decay of the sampled generator; 0 = off")

        PRESETS: ClassVar = {
            "cpu": {
                "image": dict(latent_dim=64, width=32, steps=1000, batch_size=64, ema=0.99, pac=1, r1=0.0, conditional=True),
                "vector": dict(latent_dim=8, width=128, depth=3, steps=12000, batch_size=256, ema=0.999, pac=1, r1=0.1, conditional=False),
            },
            # Between cpu and paper: ~1 min per generation on a datacenter GPU (estimated from DCGAN step
            # costs, not yet timed: benchmarks/gpu_check.py times it).
            "gpu": {
                "image": dict(latent_dim=100, width=64, steps=8000, batch_size=128, ema=0.999, pac=1, r1=0.0, conditional=True),
                "vector": dict(latent_dim=16, width=256, depth=3, steps=10000, batch_size=512, ema=0.999, pac=1, r1=0.1, conditional=False),
            },
            "paper": {
                "image": dict(latent_dim=100, width=64, steps=20000, batch_size=64, ema=0.999, pac=1, r1=0.0, conditional=True),
                "vector": dict(latent_dim=16, width=256, depth=3, steps=20000, batch_size=256, ema=0.0, pac=1, r1=0.1, conditional=False),
            },
        }

    @classmethod
    def min_train_size(cls, params):
        return max(cls.min_fit_samples, params.pac or 1)

    @classmethod
    def resolve_params(cls, params, *, data_shape, num_classes=None):
        p = super().resolve_params(params, data_shape=data_shape, num_classes=num_classes)
        wgan = p.objective == "wgan-gp"
        # Optimiser defaults of the two papers: DCGAN Adam(2e-4, 0.5, 0.999), WGAN-GP Adam(1e-4, 0, 0.9), 5 critic
        # steps. The cpu preset trains ~20x fewer steps, so it uses a larger rate (measured: DCGAN on mnist5k at
        # 1200 steps reaches LeNet-FID/noise-FID 0.10 with 5e-4 against 0.28 with 2e-4).
        defaults = dict(lr=1e-4 if wgan else 2e-4, beta1=0.0 if wgan else 0.5, beta2=0.9 if wgan else 0.999,
                        n_critic=5 if wgan else 1)
        if p.preset == "cpu":
            defaults["lr"] = 2e-4 if wgan else 5e-4
        if data_kind(tuple(data_shape)) == "vector":
            defaults["lr"] = 1e-4 if wgan else 1e-3
        return p.model_copy(update={k: v for k, v in defaults.items() if getattr(p, k) is None})

    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        super().check(params, data_shape=data_shape, num_classes=num_classes)
        if data_kind(tuple(data_shape)) == "image":
            c, h, w = data_shape
            k = _upsamplings(min(h, w))
            if k == 0 or h % 2**k or w % 2**k:
                raise ConfigError(f"generator.name: gan needs image sides that halve at least once to >= 4 pixels, "
                                  f"got {h}x{w}")
        if params.conditional and num_classes and params.pac > 1:
            raise ConfigError("generator.pac: packing (pac > 1) and conditional: true cannot be combined")
        if params.pac > params.batch_size:
            raise ConfigError(f"generator.pac: {params.pac} exceeds generator.batch_size {params.batch_size}")

    def __init__(self, params, *, data_shape, num_classes=None, device="cpu"):
        super().__init__(params, data_shape=data_shape, num_classes=num_classes, device=device)
        self.classes = num_classes if self.p.conditional and num_classes else None

    def _build(self):
        p, dev = self.p, self.torch_device
        k = self.classes or 0
        if self.kind == "image":
            c, h, w = self.data_shape
            self.G = ConditionalGenerator(DCGenerator(p.latent_dim + k, self.data_shape, p.width), self.classes)
            self.D = Critic(DCFeatures((c * p.pac, h, w), p.width), self.classes, p.pac)
        else:
            (dim,) = self.data_shape
            self.G = ConditionalGenerator(_mlp([p.latent_dim + k] + [p.width] * p.depth + [dim], nn.ReLU), self.classes)
            self.D = Critic(MLPFeatures(dim * p.pac, p.width, p.depth), self.classes, p.pac)
        self.G.to(dev)
        self.D.to(dev)
        if self.kind == "image":
            # channels-last convolutions: 1.47x faster fwd+bwd of the cpu-preset DCGAN pair on one CPU
            # thread (62 vs 91 ms per batch of 64, mkldnn), and the layout GPUs' tensor cores prefer.
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        # 2-D data are standardised for training; the generator learns the standardised law.
        self.register_stats(torch.zeros(self.data_shape[0] if self.kind == "vector" else 1),
                            torch.ones(self.data_shape[0] if self.kind == "vector" else 1))
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))
        self.ema = EMA(self.G, p.ema) if p.ema else None
        self.standardised = False

    def register_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.data_mean = mean.to(self.torch_device)
        self.data_std = std.to(self.torch_device)

    def _train(self, x, y, generator):
        p, dev = self.p, self.torch_device
        if self.kind == "vector":
            if not self.standardised:
                self.register_stats(x.mean(0), x.std(0).clamp_min(1e-6))
                self.standardised = True
            x = (x - self.data_mean) / self.data_std
        G = maybe_compile(self.G, dev, p.compile)
        D = maybe_compile(self.D, dev, p.compile)
        self.G.train()
        self.D.train()
        if self.classes and y is None:
            raise ValueError("gan: conditional generator needs labelled training data (set generator.conditional: false)")
        if not self.classes:
            y = None
        if len(x) < p.pac:
            raise ValueError(f"gan: pac={p.pac} needs at least {p.pac} training samples, got {len(x)}")
        batches = endless_batches(len(x), p.batch_size, generator)
        g_batch = p.batch_size - p.batch_size % p.pac
        for step in range(p.steps):
            for _ in range(p.n_critic):
                index = next(batches)
                index = index[:len(index) - len(index) % p.pac].to(dev)
                real, labels = x[index], (None if y is None else y[index])
                z = randn((len(real), p.latent_dim), generator, dev)
                with autocast(dev, p.amp):
                    with torch.no_grad():
                        fake = G(z, labels)
                    d_real, d_fake = D(real, labels), D(fake, labels)
                    if p.objective == "gan":
                        loss_D = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
                    else:
                        loss_D = d_fake.mean() - d_real.mean()
                # The penalties differentiate twice, which compiled graphs cannot: they use the plain D
                # (same parameters).
                if p.objective == "wgan-gp" and p.gp_weight > 0:
                    critic = lambda v: self.D(v, labels)  # noqa: E731
                    loss_D = loss_D + p.gp_weight * self._gradient_penalty(critic, real, fake, generator)
                if p.objective == "gan" and p.r1 > 0:
                    loss_D = loss_D + p.r1 / 2 * self._r1_penalty(lambda v: self.D(v, labels), real)
                self.opt_D.zero_grad(set_to_none=True)
                loss_D.backward()
                self.opt_D.step()
            z = randn((g_batch, p.latent_dim), generator, dev)
            labels = self._labels(g_batch, generator)
            with autocast(dev, p.amp):
                d_gen = D(G(z, labels), labels)
                loss_G = F.softplus(-d_gen).mean() if p.objective == "gan" else -d_gen.mean()
            self.opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            self.opt_G.step()
            if self.ema is not None:
                self.ema.update(self.G)
            if not torch.isfinite(loss_G.detach()):
                raise RunFailed(f"gan: generator loss is {loss_G.item()} at step {step}")

    @staticmethod
    def _gradient_penalty(D, real, fake, generator):
        """Gulrajani et al. 2017: (||∇D(x̂)|| - 1)² on random interpolates of real and fake."""
        shape = (len(real),) + (1,) * (real.dim() - 1)
        alpha = torch.rand(shape, generator=generator).to(real.device)
        mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    @staticmethod
    def _r1_penalty(D, real):
        """Mescheder et al. 2018: squared gradient norm of D on real data (zero-centred)."""
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
        return grad.flatten(1).pow(2).sum(1).mean()

    def _labels(self, n: int, generator) -> torch.Tensor | None:
        """Balanced class labels (each class n/K times, shuffled) for conditional generation."""
        if not self.classes:
            return None
        labels = torch.arange(n) % self.classes
        return labels[torch.randperm(n, generator=generator)].to(self.torch_device)

    def _sample(self, n, bias, generator):
        p, dev = self.p, self.torch_device
        G = self.ema.module if self.ema is not None else self.G
        G.eval()
        labels = self._labels(n, generator)
        chunks = []
        for start in range(0, n, 1024):
            z = randn((min(1024, n - start), p.latent_dim), generator, dev, std=sqrt_bias(bias))
            with autocast(dev, p.amp):
                out = G(z, None if labels is None else labels[start:start + len(z)]).float()
            if self.kind == "vector":
                out = out * self.data_std + self.data_mean
            chunks.append(out)
        x = torch.cat(chunks) if chunks else torch.zeros((0,) + self.data_shape, device=dev)
        return tensors_to_samples(x, labels, image=self.kind == "image")

    def _state(self):
        state = {**module_state("G", self.G), **module_state("D", self.D),
                 **optimizer_state("opt_G", self.opt_G), **optimizer_state("opt_D", self.opt_D),
                 "data_mean": self.data_mean.cpu(), "data_std": self.data_std.cpu(),
                 "standardised": torch.tensor(self.standardised)}
        if self.ema is not None:
            state.update(module_state("ema", self.ema.averaged))
        return state

    def _load(self, state):
        load_module_state("G", self.G, state)
        load_module_state("D", self.D, state)
        load_optimizer_state("opt_G", self.opt_G, state)
        load_optimizer_state("opt_D", self.opt_D, state)
        self.register_stats(state["data_mean"], state["data_std"])
        self.standardised = bool(state["standardised"])
        if self.ema is not None:
            load_module_state("ema", self.ema.averaged, state)
