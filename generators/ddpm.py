"""Class-conditional denoising diffusion (DDPM) generator, as in MAD's MNIST diffusion loops.

Images use a diffusers ``UNet2DModel``; 2-D data a small residual MLP denoiser. Both are trained
with a diffusers ``DDPMScheduler`` (T = 500 linear-beta steps, as in MAD; ε-prediction at the
``paper`` preset, v-prediction at the ``cpu`` preset, see ``PRESETS``) and sampled either with
the full ancestral DDPM chain or, much faster, with a ``DDIMScheduler`` of ``sample_steps``
steps (η = 0 by default, deterministic given the initial noise).

Sampling bias (MAD §4): the model is class-conditional with a null class; during training the
label is replaced by the null class with probability ``cond_drop`` (10 %), and at sampling time
classifier-free guidance (Ho & Salimans 2022) mixes the two predictions,

    ε = ε(x, ∅) + (1 + w) · (ε(x, c) − ε(x, ∅)),   with λ = 1 / (1 + w), i.e. 1 + w = 1/λ.

λ = 1 is plain conditional sampling (w = 0, one network pass per step); λ → 0 is infinite
guidance, so ``sample`` rejects λ = 0 with a :class:`~madlab.core.errors.ConfigError` rather than
clamping it to an arbitrary w. Without class labels (e.g. ``rosenbrock``, or a conditional
model fitted on unlabelled samples, which then trains and samples the null class only) λ has
nothing to guide: it is ignored, with a warning.

SIMS (``loop.sims``; Alemohammad et al. 2024, "Self-Improving Diffusion Models with Synthetic Data",
arXiv 2408.16333): after fitting, the loop has the model draw ``sims.size`` samples of its own and
:meth:`DDPMGenerator.fit_auxiliary` fine-tunes a copy of the (EMA) model on them for ``sims.steps`` steps;
sampling then uses the guided prediction

    s = (1 + ω) s_model − ω s_auxiliary,

steering away from what the model's own synthetic data taught. The mix is affine in ε (and so in v and
x_0 at fixed x_t), so it holds for every ``prediction``. With classifier-free guidance (λ < 1) each model
is guided first, s_m = s_m(x, ∅) + (1 + w)(s_m(x, c) − s_m(x, ∅)), then the two are mixed as above.
ω = 0 skips the auxiliary model altogether: the plain sampler, the same operations.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import ClassVar, Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from pydantic import Field
from torch import nn

from madlab.core.errors import ConfigError, RunFailed
from madlab.plugins.torch import (EMA, NeuralParams, TorchGenerator, autocast, endless_batches, load_module_state,
                                  maybe_compile, module_state, randn, samples_to_tensors, steps_per_epoch,
                                  tensors_to_samples, torch_generator)


class MLPDenoiser(nn.Module):
    """ε-predictor for vector data: residual SiLU MLP blocks modulated by time + class embeddings.

    Hand-written because diffusers ships denoisers for images and sequences only; the time
    embedding reuses diffusers' ``Timesteps``/``TimestepEmbedding`` so both paths embed t alike.
    """

    def __init__(self, dim: int, hidden: int, depth: int, num_class_embeds: int | None):
        super().__init__()
        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(hidden, hidden)
        self.class_embed = nn.Embedding(num_class_embeds, hidden) if num_class_embeds else None
        self.inp = nn.Linear(dim, hidden)
        self.emb_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, t, class_labels=None):
        emb = self.time_embed(self.time_proj(t).to(x.dtype))
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels)
        h = self.inp(x)
        for proj, block in zip(self.emb_proj, self.blocks):
            h = h + block(h + proj(emb))
        return self.out(h)


class DDPMGenerator(TorchGenerator):
    """Class-conditional DDPM (diffusers UNet / MLP); λ = 1/(1+w) classifier-free guidance."""

    name = "ddpm"
    min_bias_exclusive = 0.0  # λ = 0 is infinite guidance: refused at config time
    data_kinds = frozenset({"vector", "image"})
    min_fit_samples = 2
    supports_sims = True

    class Params(NeuralParams):
        # Sizes left unset (None) come from PRESETS[preset][kind].
        channels: tuple[int, ...] | None = Field(None, min_length=1, description="UNet block widths, one per resolution")
        layers_per_block: int | None = Field(None, ge=1)
        attention: bool | None = Field(None, description="self-attention in the lower-resolution UNet blocks")
        norm_groups: int | None = Field(None, ge=1, description="GroupNorm groups; must divide every width")
        hidden: int | None = Field(None, ge=1, description="MLP denoiser width (vector data)")
        depth: int | None = Field(None, ge=1, description="MLP denoiser residual blocks (vector data)")
        epochs: int | None = Field(None, ge=1)
        steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs when set")
        batch_size: int | None = Field(None, ge=1)
        lr: float | None = Field(None, gt=0)
        ema: float | None = Field(None, ge=0, lt=1, description="EMA decay of the sampled weights; 0 = off")
        grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = off")
        timesteps: int = Field(500, ge=2, description="diffusion steps T of the training scheduler")
        beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear"
        prediction: Literal["epsilon", "v_prediction", "sample"] | None = Field(
            None, description="what the network predicts: noise ε (MAD, DDPM), velocity v, or the clean sample")
        sampler: Literal["ddim", "ddpm"] | None = None
        sample_steps: int | None = Field(None, ge=1, description="DDIM steps (ddim sampler only)")
        eta: float = Field(0.0, ge=0, le=1, description="DDIM η (0 = deterministic DDIM)")
        sample_batch_size: int | None = Field(None, ge=1)
        conditional: bool = Field(True, description="condition on class labels when the data has them")
        cond_drop: float = Field(0.1, ge=0, lt=1, description="probability of training on the null class")
        label_sampling: Literal["uniform", "empirical"] = Field(
            "uniform", description="labels of generated samples: balanced, or the last training set's frequencies")

        # cpu/image: a 0.26M-parameter UNet trained for a fixed 300 steps of 64 images (a couple of
        # minutes on one core) with v-prediction, which at this budget gives far cleaner samples
        # than ε-prediction (mnist5k LeNet-FID / noise-FID 0.12 vs 0.65 at 10 DDIM steps).
        PRESETS: ClassVar = {
            "cpu": {
                "image": dict(prediction="v_prediction", channels=(16, 32, 32), layers_per_block=1, attention=False,
                              norm_groups=8, steps=300, batch_size=64, lr=2e-3, ema=0.99, sampler="ddim", sample_steps=10,
                              sample_batch_size=500),
                "vector": dict(prediction="epsilon", hidden=128, depth=3, steps=1500, batch_size=256, lr=1e-3, ema=0.99,
                               sampler="ddim", sample_steps=50, sample_batch_size=4096),
            },
            # Between cpu and paper: a 64-128-128 UNet, v-prediction, 2500 steps of 128 images, 50 DDIM steps;
            # ~1 min per generation on a datacenter GPU (estimated, not yet timed).
            "gpu": {
                "image": dict(prediction="v_prediction", channels=(64, 128, 128), layers_per_block=2, attention=True,
                              norm_groups=32, steps=2500, batch_size=128, lr=2e-4, ema=0.999, sampler="ddim",
                              sample_steps=50, sample_batch_size=1000),
                "vector": dict(prediction="epsilon", hidden=256, depth=4, steps=10000, batch_size=512, lr=1e-3, ema=0.999,
                               sampler="ddim", sample_steps=100, sample_batch_size=8192),
            },
            # 2-D floor (benchmarks/check_quality.py, gmm25): gpu 25 modes, precision 0.94; paper fails on 1,000
            # training points (800 steps, EMA 0.999 still ~45 % initial weights: precision 0.03) and passes on
            # 10,000 (25 modes, precision 0.73).
            # MAD's MNIST DDPM (after the classifier-free-guidance MNIST code it builds on):
            # 20 epochs, batch 256, lr 1e-4, T = 500, full ancestral sampling.
            "paper": {
                "image": dict(prediction="epsilon", channels=(128, 256, 256), layers_per_block=2, attention=True, norm_groups=32,
                              epochs=20, batch_size=256, lr=1e-4, ema=0.9995, sampler="ddpm", sample_steps=500,
                              sample_batch_size=1000),
                "vector": dict(prediction="epsilon", hidden=256, depth=4, epochs=200, batch_size=256, lr=1e-3, ema=0.999,
                               sampler="ddpm", sample_steps=500, sample_batch_size=8192),
            },
        }

        def resolved(self, kind):
            """Fill unset fields from the preset for ``kind`` only: image-only sizes (channels, ...)
            stay None on vector data and vice versa."""
            table = dict(self.PRESETS[self.preset][kind])
            if self.epochs is not None or self.steps is not None:
                table.pop("epochs", None), table.pop("steps", None)
            return self.model_copy(update={k: v for k, v in table.items() if getattr(self, k) is None})

    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        super().check(params, data_shape=data_shape, num_classes=num_classes)
        if len(data_shape) == 3:
            bad = [c for c in params.channels if c % params.norm_groups]
            if bad:
                raise ConfigError(f"generator.norm_groups: {params.norm_groups} does not divide channel widths {bad}")
            size = tuple(data_shape[1:])
            factor = 2 ** (len(params.channels) - 1)
            if any(s % factor for s in size):
                raise ConfigError(f"generator.channels: {len(params.channels)} resolutions halve {size[0]}x{size[1]} "
                                  f"images {len(params.channels) - 1} times, which needs sides divisible by {factor}")

    def __init__(self, params, *, data_shape, num_classes=None, device="cpu"):
        super().__init__(params, data_shape=data_shape, num_classes=num_classes, device=device)
        p = self.p
        self.conditional = bool(p.conditional and num_classes)
        self.null_class = int(num_classes) if self.conditional else None
        self.train_scheduler = DDPMScheduler(**self._scheduler_config())
        self.label_freq: torch.Tensor | None = None
        self.aux: nn.Module | None = None  # SIMS: the auxiliary model fine-tuned on the model's own samples
        self.sims_omega = 0.0

    # -- construction ---------------------------------------------------------------------

    def _build(self):
        p = self.p
        embeds = self.null_class + 1 if self.conditional else None
        if self.kind == "image":
            levels = len(p.channels)
            attn = [p.attention and i > 0 for i in range(levels)]
            self.model = UNet2DModel(
                sample_size=self.data_shape[1:], in_channels=self.data_shape[0], out_channels=self.data_shape[0],
                block_out_channels=tuple(p.channels), layers_per_block=p.layers_per_block,
                down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
                up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
                add_attention=bool(p.attention), norm_num_groups=p.norm_groups, num_class_embeds=embeds,
                attention_head_dim=8,
            )
        else:
            self.model = MLPDenoiser(self.data_shape[0], p.hidden, p.depth, embeds)
        self.model.to(self.torch_device)
        self.ema = EMA(self.model, p.ema) if p.ema else None
        self.shift = torch.zeros(self.data_shape, device=self.torch_device)
        self.scale = torch.ones(self.data_shape, device=self.torch_device)
        self.normalised = self.kind == "image"

    def _forward(self, module, x, t, labels):
        out = module(x, t, labels) if self.conditional else module(x, t)
        return out.sample if self.kind == "image" else out

    # -- training -------------------------------------------------------------------------

    def _train(self, x, y, generator):
        p, dev = self.p, self.torch_device
        n = len(x)
        self.aux, self.sims_omega = None, 0.0  # a fresh fit has no SIMS auxiliary until fit_auxiliary
        if not self.normalised:
            # Vector data are standardised once, on the first fit; a warm-started model keeps
            # the coordinates it was trained in.
            self.shift = x.mean(0)
            self.scale = x.std(0).clamp_min(1e-6)
            self.normalised = True
        x = (x - self.shift) / self.scale
        labels = self._training_labels(y, n)
        steps = p.steps or p.epochs * steps_per_epoch(n, p.batch_size)
        model = maybe_compile(self.model, dev, p.compile)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=p.lr)
        batches = endless_batches(n, p.batch_size, generator)
        loss_sum = torch.zeros((), device=dev)
        self.model.train()
        for _ in range(steps):
            loss_sum += self._train_step(model, optimizer, x, labels, next(batches), generator)
        self.model.eval()
        loss = float(loss_sum) / steps
        if not math.isfinite(loss):
            raise RunFailed(f"ddpm: training loss is {loss} (diverged); lower generator.lr")
        self.last_loss = loss

    def _training_labels(self, y, n):
        if not self.conditional:
            return None
        if y is None:
            # Unlabelled training data: everything is the null class (unconditional training),
            # recorded as all-zero label frequencies so that sampling uses the null class too.
            self.label_freq = torch.zeros(self.null_class, dtype=torch.float64)
            return torch.full((n,), self.null_class, dtype=torch.int64, device=self.torch_device)
        if int(y.min()) < 0 or int(y.max()) >= self.null_class:
            raise ValueError(f"ddpm: labels must lie in [0, {self.null_class}), got [{int(y.min())}, {int(y.max())}]")
        self.label_freq = torch.bincount(y.cpu(), minlength=self.null_class).double()
        return y

    def _train_step(self, model, optimizer, x, labels, index, generator):
        loss = self._loss(model, x, labels, index, generator)
        self._update(self.model, optimizer, loss)
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach()

    def _update(self, module, optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.p.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.p.grad_clip)
        optimizer.step()

    def _loss(self, model, x, labels, index, generator):
        """The denoising loss on rows ``index`` (noise, timesteps and condition dropout drawn from ``generator``)."""
        p, dev = self.p, self.torch_device
        index = index.to(dev)
        x0 = x[index]
        b = len(x0)
        noise = randn(x0.shape, generator, dev)
        t = torch.randint(0, p.timesteps, (b,), generator=generator).to(dev)
        xt = self.train_scheduler.add_noise(x0, noise, t)
        c = None
        if labels is not None:
            drop = (torch.rand(b, generator=generator) < p.cond_drop).to(dev)
            c = torch.where(drop, self.null_class, labels[index])
        with autocast(dev, p.amp):
            pred = self._forward(model, xt, t, c)
        if p.prediction == "epsilon":
            target = noise
        elif p.prediction == "sample":
            target = x0
        else:
            target = self.train_scheduler.get_velocity(x0, noise, t)
        return torch.nn.functional.mse_loss(pred.float(), target)

    def fit_auxiliary(self, data, *, omega, steps, seed):
        """SIMS: fine-tune a copy of the sampled (EMA) weights on ``data``, the model's own samples, in the
        model's coordinates; ``sample`` then mixes (1 + omega) s_model - omega s_auxiliary."""
        generator = torch_generator(seed)
        x, y = samples_to_tensors(data, self.torch_device)
        x = (x - self.shift) / self.scale
        labels = None
        if self.conditional:
            labels = y if y is not None and self._guidable else torch.full(
                (len(x),), self.null_class, dtype=torch.int64, device=self.torch_device)
        aux = copy.deepcopy(self.ema.module if self.ema is not None else self.model)
        aux.requires_grad_(True).train()
        optimizer = torch.optim.Adam(aux.parameters(), lr=self.p.lr)
        batches = endless_batches(len(x), self.p.batch_size, generator)
        for _ in range(steps):
            self._update(aux, optimizer, self._loss(aux, x, labels, next(batches), generator))
        self.aux, self.sims_omega = aux.eval().requires_grad_(False), float(omega)

    # -- sampling -------------------------------------------------------------------------

    def _scheduler_config(self) -> dict:
        p = self.p
        return dict(num_train_timesteps=p.timesteps, beta_schedule=p.beta_schedule, prediction_type=p.prediction,
                    clip_sample=self.kind == "image")

    def sampling_scheduler(self):
        """A fresh sampler scheduler (they hold per-call timestep state) sharing the training betas.

        DDIM uses "trailing" timestep spacing so that even a few steps start from t = T - 1,
        pure noise, as training assumed (Lin et al. 2024).
        """
        p = self.p
        if p.sampler == "ddim":
            sched = DDIMScheduler(**self._scheduler_config(), timestep_spacing="trailing")
            sched.set_timesteps(min(p.sample_steps, p.timesteps))
        else:
            sched = DDPMScheduler(**self._scheduler_config())
            sched.set_timesteps(p.timesteps)
        return sched

    @property
    def _guidable(self) -> bool:
        """Class-conditional and trained on labelled data (so that guidance has labels to follow)."""
        return self.conditional and not (self.label_freq is not None and self.label_freq.sum() == 0)

    def _sample_labels(self, n, generator):
        if not self._guidable:
            return None
        k = self.null_class
        if self.p.label_sampling == "empirical" and self.label_freq is not None and self.label_freq.sum() > 0:
            labels = torch.multinomial(self.label_freq, n, replacement=True, generator=generator)
        else:
            labels = torch.arange(n) % k
            labels = labels[torch.randperm(n, generator=generator)]
        return labels

    def _sample(self, n, bias, generator):
        if bias <= 0:
            raise ConfigError("loop.bias: ddpm needs λ > 0 (λ = 1/(1+w); λ = 0 would be infinite guidance)")
        if bias < 1 and not self._guidable:
            warnings.warn("ddpm: sampling bias λ < 1 has no effect on an unconditional model (no labels to guide)",
                          stacklevel=3)
        p, dev = self.p, self.torch_device
        module = self.ema.module if self.ema is not None else self.model
        module.eval()
        module = maybe_compile(module, dev, p.compile)
        labels = self._sample_labels(n, generator)
        guided = self._guidable and bias < 1
        chunks = []
        for start in range(0, n, p.sample_batch_size):
            b = min(p.sample_batch_size, n - start)
            if labels is not None:
                c = labels[start:start + b].to(dev)
            elif self.conditional:
                c = torch.full((b,), self.null_class, dtype=torch.int64, device=dev)
            else:
                c = None
            chunks.append(self._denoise(module, b, c, 1.0 / bias if guided else None, generator))
        x = torch.cat(chunks) if chunks else torch.zeros((0, *self.data_shape), device=dev)
        x = x * self.scale + self.shift
        return tensors_to_samples(x, labels, image=self.kind == "image")

    def _denoise(self, module, b, c, guidance, generator):
        """Run the reverse chain for ``b`` samples; ``guidance`` = 1 + w (None: no guidance)."""
        p, dev = self.p, self.torch_device
        sched = self.sampling_scheduler()
        xt = randn((b, *self.data_shape), generator, dev)
        if guidance is not None:
            c = torch.cat([c, torch.full_like(c, self.null_class)])
        step_kwargs = {"eta": p.eta} if p.sampler == "ddim" else {}
        for t in sched.timesteps:
            tt = torch.full((len(c) if c is not None else b,), int(t), device=dev, dtype=torch.int64)
            inp = torch.cat([xt, xt]) if guidance is not None else xt
            out = self._predict(module, inp, tt, c, guidance)
            if self.aux is not None and self.sims_omega > 0:  # SIMS; ω = 0 leaves the plain path untouched
                out = (1 + self.sims_omega) * out - self.sims_omega * self._predict(self.aux, inp, tt, c, guidance)
            xt = sched.step(out, int(t), xt, generator=generator, **step_kwargs).prev_sample
        return xt

    def _predict(self, module, inp, tt, c, guidance):
        """One network's prediction, classifier-free guided when ``guidance`` = 1 + w is set."""
        with autocast(self.torch_device, self.p.amp):
            out = self._forward(module, inp, tt, c).float()
        if guidance is not None:  # affine in ε at fixed x_t, so the same mix holds for v and x_0
            out_c, out_u = out.chunk(2)
            out = out_u + guidance * (out_c - out_u)
        return out

    # -- state ----------------------------------------------------------------------------

    def _state(self):
        state = module_state("model", self.model)
        if self.ema is not None:
            state.update(module_state("ema", self.ema.averaged))
        state["data.shift"] = self.shift.detach().cpu()
        state["data.scale"] = self.scale.detach().cpu()
        if self.label_freq is not None:
            state["data.label_freq"] = self.label_freq.clone()
        if self.aux is not None:
            state.update(module_state("aux", self.aux))
            state["sims.omega"] = torch.tensor(self.sims_omega, dtype=torch.float64)
        return state

    def _load(self, state):
        try:
            load_module_state("model", self.model, state)
            if self.ema is not None:
                if any(k.startswith("ema.") for k in state):
                    load_module_state("ema", self.ema.averaged, state)
                else:
                    self.ema = EMA(self.model, self.p.ema)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ConfigError(f"generator: ddpm checkpoint does not match the configured architecture ({first})") from None
        dev = self.torch_device
        self.shift = state["data.shift"].to(dev, torch.float32)
        self.scale = state["data.scale"].to(dev, torch.float32)
        self.normalised = True
        freq = state.get("data.label_freq")
        self.label_freq = None if freq is None else freq.double().cpu()
        self.aux, self.sims_omega = None, 0.0
        if "sims.omega" in state:
            self.aux = copy.deepcopy(self.model)
            load_module_state("aux", self.aux, state)
            self.aux.eval().requires_grad_(False)
            self.sims_omega = float(state["sims.omega"])

    @classmethod
    def min_train_size(cls, params):
        return cls.min_fit_samples


__all__ = ["DDPMGenerator", "MLPDenoiser"]
