"""Shared PyTorch plumbing for the neural generator plugins (gan, flow, ddpm).

Everything a neural generator needs besides its model: device resolution, seeded RNGs that
do not touch the global torch state, deterministic minibatches, EMA, bf16 autocast and
``torch.compile`` (GPU only), Samples <-> tensor conversion, ``preset`` handling and flat,
pickle-free state dicts for modules and optimizers.

Determinism rule used by every plugin: parameters are initialised inside :func:`seeded`
(with the ``fit`` seed, or seed 0 when a state is loaded and overwrites them anyway), and
all sampling noise comes from a CPU :class:`torch.Generator` so that a seed gives the same
samples on CPU and GPU.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.plugins.generator import Generator, Params

Preset = Literal["cpu", "gpu", "paper"]

#: ``1`` turns the CUDA-only branches (bf16 autocast, ``torch.compile``) on for CPU devices too, so
#: tests run them before any GPU does (torch supports both on CPU; they are slower there).
GPU_PATHS_ON_CPU_ENV = "MADLAB_GPU_PATHS_ON_CPU"
#: ``torch.compile`` backend (default ``inductor``); tests use ``aot_eager``, which traces the same
#: graphs (dynamo + AOT autograd) without paying inductor's C++ build on a CPU.
COMPILE_BACKEND_ENV = "MADLAB_COMPILE_BACKEND"


def gpu_paths(device: torch.device) -> bool:
    """Whether the bf16 / compile branches are taken on ``device`` (CUDA, or forced for tests)."""
    return device.type == "cuda" or os.environ.get(GPU_PATHS_ON_CPU_ENV) == "1"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device to run on: the engine's assignment, falling back to CPU.

    ``"cuda"`` (or ``"cuda:N"``) is honoured only when CUDA is available, so a config written
    for a GPU cluster still runs on a laptop; ``"auto"``/``None`` picks CUDA when present.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return dev


def _seed63(seed: int) -> int:
    # Loop seeds may come from SeedSequence and exceed torch's int64 seed range.
    return int(seed) % (2**63 - 1)


def torch_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (draw on CPU, then move to the device)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(_seed63(seed))
    return g


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Run a block (e.g. module construction) under a fixed global torch seed, then restore it.

    ``nn.Module`` initialisers draw from the global RNG; forking it keeps a plugin from
    disturbing, or being disturbed by, anything else in the process.
    """
    devices = [device] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_seed63(seed))
        yield


def randn(shape, generator: torch.Generator, device: torch.device, *, std: float = 1.0) -> torch.Tensor:
    """Standard normal noise drawn on CPU from ``generator`` and moved to ``device``."""
    z = torch.randn(*shape, generator=generator)
    if std != 1.0:
        z = z * std
    return z.to(device)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, *,
                  drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index tensors of one shuffled pass over ``n`` rows (deterministic under ``generator``)."""
    perm = torch.randperm(n, generator=generator)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield perm[start:start + batch_size]


def endless_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index tensors of full batches forever, reshuffling every epoch (step-based training).

    With fewer rows than ``batch_size`` every batch is the whole (shuffled) set.
    """
    size = min(batch_size, n)
    while True:
        yield from epoch_batches(n, size, generator, drop_last=True)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // min(batch_size, n))


class EMA:
    """Exponential moving average of a module's parameters and buffers.

    Wraps ``torch.optim.swa_utils.AveragedModel`` (the maintained implementation); the average
    is what a plugin samples from when ``ema`` is on.
    """

    def __init__(self, module: nn.Module, decay: float):

        self.decay = decay
        self.averaged = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def update(self, module: nn.Module) -> None:
        self.averaged.update_parameters(module)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a no-op context on CPU (bf16 matmuls are slow there)
    unless ``$MADLAB_GPU_PATHS_ON_CPU`` forces it (:func:`gpu_paths`)."""
    if enabled and gpu_paths(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(module: nn.Module, device: torch.device, enabled: bool) -> nn.Module:
    """``torch.compile(module)`` on CUDA when ``enabled``; the module itself otherwise.

    Compilation costs tens of seconds that a CPU quickstart cannot pay back. The compiled
    wrapper shares parameters with ``module``; state dicts go through :func:`unwrap` so that a
    compiled module's checkpoint loads into an uncompiled one and back.
    """
    if enabled and gpu_paths(device):
        return torch.compile(module, backend=os.environ.get(COMPILE_BACKEND_ENV) or "inductor")
    return module


def unwrap(module: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper holds (its state dict keys carry ``_orig_mod.``)."""
    return getattr(module, "_orig_mod", module)


# -- Samples <-> tensors -------------------------------------------------------------------

def samples_to_tensors(data: Samples, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = torch.as_tensor(np.ascontiguousarray(data.x), dtype=torch.float32, device=device)
    y = None if data.y is None else torch.as_tensor(np.asarray(data.y), dtype=torch.int64, device=device)
    return x, y


def tensors_to_samples(x: torch.Tensor, y: torch.Tensor | None = None, *, image: bool) -> Samples:
    """float32 numpy Samples; images are clamped to [-1, 1] as the Samples contract requires."""
    x = x.detach().float()
    if image:
        x = x.clamp(-1.0, 1.0)
    labels = None if y is None else y.detach().cpu().numpy().astype(np.int64)
    return Samples(x.cpu().contiguous().numpy().astype(np.float32, copy=False), labels)


def token_log_likelihood(logp: torch.Tensor, target: torch.Tensor, ignore: int = -100) -> tuple[float, int]:
    """(sum of log p(target), number of counted targets) over positions whose target is not ``ignore``;
    the language models' perplexity sums (``exp(-total / count)``)."""
    counted = target != ignore
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(picked[counted].double().sum()), int(counted.sum())


def data_kind(shape: tuple[int, ...]) -> str:
    """``"image"`` for (C, H, W) data, ``"vector"`` for (d,)."""
    return "image" if len(shape) == 3 else "vector"


# -- presets ---------------------------------------------------------------------------------

class NeuralParams(Params):
    """Hyper-parameters shared by neural generators, with ``preset`` defaults.

    Size fields (widths, depths, steps, batch size, ...) are declared ``X | None = None`` in a
    subclass; ``PRESETS[preset][kind]`` supplies the value of every one left unset, where
    ``kind`` is ``"image"`` or ``"vector"`` (the data decides, which a config check cannot).
    ``cpu`` is sized for the quickstart on a laptop, ``paper`` for MAD's scale on a GPU, ``gpu``
    in between: one generation of MNIST-scale data in about a minute on a datacenter GPU
    (an estimate from FLOP counts until ``benchmarks/gpu_check.py`` has timed it).
    """

    preset: Preset = "cpu"
    amp: bool = True
    compile: bool = False

    PRESETS: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}

    def resolved(self, kind: str) -> "NeuralParams":
        """A copy with every unset (None) field filled from the preset for ``kind``."""
        table = self.PRESETS.get(self.preset, {}).get(kind, {})
        update = {key: value for key, value in table.items() if getattr(self, key, None) is None}
        out = self.model_copy(update=update)
        needed = {key for kinds in self.PRESETS.values() for key in kinds.get(kind, {})}
        missing = sorted(key for key in needed if getattr(out, key, None) is None)
        if missing:
            raise ValueError(f"preset {self.preset!r} has no value for {missing} on {kind} data")
        return out


# -- flat state dicts ------------------------------------------------------------------------

def module_state(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` flattened under ``prefix.`` (detached CPU tensors); a compiled
    module saves the keys of the module it wraps."""
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in unwrap(module).state_dict().items()}


def load_module_state(prefix: str, module: nn.Module, state: dict) -> None:
    cut = len(prefix) + 1
    sub = {k[cut:]: torch.as_tensor(v) for k, v in state.items() if k.startswith(prefix + ".")}
    unwrap(module).load_state_dict(sub)


def optimizer_state(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Per-parameter optimizer tensors (e.g. Adam moments and step) as ``prefix.<i>.<key>``.

    Hyper-parameters (param_groups) are not saved: the plugin rebuilds them from its Params.
    """
    out = {}
    for index, slots in optimizer.state_dict()["state"].items():
        for key, value in slots.items():
            out[f"{prefix}.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def load_optimizer_state(prefix: str, optimizer: torch.optim.Optimizer, state: dict) -> None:
    current = optimizer.state_dict()
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(prefix + "."):
            continue
        index, name = key[len(prefix) + 1:].split(".", 1)
        slots.setdefault(int(index), {})[name] = torch.as_tensor(value)
    if slots:
        optimizer.load_state_dict({"state": slots, "param_groups": current["param_groups"]})


def as_tensors(state: dict) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for k, v in state.items()}


def resolve_and_place(gen, params, num_classes, device) -> None:
    """Resolve and check ``params`` (the validation hook, so ``__init__`` and ``madlab validate``
    refuse the same things), pick the torch device, and leave the model to be built lazily."""
    gen.p = gen.resolve_params(params, data_shape=gen.data_shape, num_classes=num_classes)
    gen.check(gen.p, data_shape=gen.data_shape, num_classes=num_classes)
    gen.torch_device = resolve_device(device)
    gen.built = False


# -- a base class for torch generators -------------------------------------------------------

class TorchGenerator(Generator):
    """Common skeleton: resolved params, device, lazy seeded model construction.

    Subclasses implement ``_build()`` (create modules/optimizers from ``self.p``; called inside
    :func:`seeded`), ``_train(x, y, generator)``, ``_sample(n, bias, generator)`` and the
    ``_state``/``_load`` pair. ``fit`` builds the model with the fit seed unless it is already
    built (a loaded warm-start state), so training continues from loaded weights.
    """

    Params: ClassVar[type[NeuralParams]] = NeuralParams

    def __init__(self, params, *, data_shape, num_classes=None, device="cpu"):
        super().__init__(params, data_shape=data_shape, num_classes=num_classes, device=device)
        self.kind = data_kind(self.data_shape)
        resolve_and_place(self, params, num_classes, device)

    @classmethod
    def resolve_params(cls, params, *, data_shape, num_classes=None):
        """The preset's sizes for this data kind fill every field left unset (see NeuralParams)."""
        return params.resolved(data_kind(tuple(data_shape)))

    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        kind = data_kind(tuple(data_shape))
        if kind not in cls.data_kinds:
            raise ConfigError(f"generator.name: {cls.name} does not handle {kind} data of shape {tuple(data_shape)}")

    def _ensure_built(self, seed: int) -> None:
        if not self.built:
            with seeded(seed, self.torch_device):
                self._build()
            self.built = True

    def fit(self, data, *, seed):
        if len(data) < self.min_fit_samples:
            raise ValueError(f"{self.name} needs at least {self.min_fit_samples} samples, got {len(data)}")
        self._ensure_built(seed)
        x, y = samples_to_tensors(data, self.torch_device)
        self._train(x, y, torch_generator(seed))

    @torch.no_grad()
    def sample(self, n, *, bias, seed):
        if not self.built:
            raise RuntimeError(f"{self.name}: sample() before fit() or load_state_dict()")
        if not 0.0 <= bias <= 1.0:
            raise ValueError(f"bias must lie in [0, 1], got {bias}")
        return self._sample(int(n), float(bias), torch_generator(seed))

    def state_dict(self):
        if not self.built:
            raise RuntimeError(f"{self.name}: state_dict() before fit()")
        return self._state()

    def load_state_dict(self, state):
        self._ensure_built(0)
        self._load(as_tensors(state))

    def _build(self) -> None:
        raise NotImplementedError

    def _train(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> None:
        raise NotImplementedError

    def _sample(self, n: int, bias: float, generator: torch.Generator) -> Samples:
        raise NotImplementedError

    def _state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError


def sqrt_bias(bias: float) -> float:
    """Standard deviation of N(0, λI): the latent/base scale for sampling bias λ."""
    return math.sqrt(bias)


__all__ = [
    "resolve_device", "resolve_and_place", "token_log_likelihood", "torch_generator", "seeded", "randn", "epoch_batches", "endless_batches",
    "steps_per_epoch", "EMA", "autocast", "maybe_compile", "unwrap", "gpu_paths", "samples_to_tensors", "tensors_to_samples",
    "data_kind", "NeuralParams", "module_state", "load_module_state", "optimizer_state",
    "load_optimizer_state", "as_tensors", "TorchGenerator", "sqrt_bias",
]
