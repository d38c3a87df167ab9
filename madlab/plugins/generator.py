"""The generator protocol every plugin implements.

A generator is a class registered in the ``madlab.generators`` entry-point group. The engine
builds it from validated hyper-parameters, fits it on a training set, samples from it with a
sampling bias λ and saves/loads its state (tensors only, through safetensors: never pickles).

Bias λ in [0, 1] (1 = unbiased) is defined by each family as in MAD: Gaussian N(mu, λΣ),
GAN latent truncation, flow base temperature, diffusion classifier-free guidance λ = 1/(1+w).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from madlab.core.samples import Samples


class Params(BaseModel):
    """Base for hyper-parameter models: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Generator(ABC):
    """A generative model that one generation of a loop trains and samples.

    Subclasses set ``name``, ``Params`` (a :class:`Params` subclass) and ``data_kinds``
    (``{"vector"}``, ``{"image"}`` or both). ``cheap = True`` tells the runner that a run
    costs milliseconds, so many runs are packed into one Ray task.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    data_kinds: ClassVar[frozenset[str]] = frozenset({"vector"})
    cheap: ClassVar[bool] = False
    #: fewest training samples ``fit`` accepts (2 where a covariance is fitted).
    min_fit_samples: ClassVar[int] = 1

    def __init__(self, params: Params, *, data_shape: tuple[int, ...],
                 num_classes: int | None = None, device: str = "cpu"):
        self.params = params
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.device = device

    @abstractmethod
    def fit(self, data: Samples, *, seed: int) -> None:
        """Train on ``data``; continues from loaded state when the loop warm-starts."""

    @abstractmethod
    def sample(self, n: int, *, bias: float, seed: int) -> Samples:
        """Draw ``n`` samples with sampling bias ``bias`` (λ), deterministic under ``seed``."""

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the fitted model: a flat dict of arrays/tensors."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def model_metrics(self, dataset) -> dict[str, float]:
        """Metrics read off the fitted model itself (e.g. ``trace_cov``); none by default."""
        return {}

    def sampling_gaussian(self, bias: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, covariance) of the distribution ``sample`` draws from, if it is Gaussian.

        Lets the engine compute W2 in closed form instead of from samples.
        """
        return None

    #: sampling biases this family cannot realise (e.g. λ = 0 is infinite guidance for diffusion)
    min_bias_exclusive: ClassVar[float | None] = None
    #: a diffusion family that implements ``fit_auxiliary`` (``loop.sims``: SIMS guidance)
    supports_sims: ClassVar[bool] = False

    def fit_auxiliary(self, data: Samples, *, omega: float, steps: int, seed: int) -> None:
        """SIMS (``loop.sims``, only where ``supports_sims``): fine-tune an auxiliary copy of the fitted model on
        ``data`` (the generation's own samples) for ``steps`` steps; ``sample`` then guides away from it with
        weight ``omega``. Part of the state (checkpoints and resume keep it)."""
        raise NotImplementedError(f"generator {self.name!r} has no SIMS auxiliary model")
    #: names :meth:`model_metrics` can return (``metrics.names`` is checked against them)
    model_metric_names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def min_train_size(cls, params: Params) -> int:
        """Fewest training samples these hyper-parameters can be fitted on (config check)."""
        return cls.min_fit_samples

    # -- the validation hook: called by ``madlab validate`` and at the start of ``madlab run``
    # for every run of a sweep, before anything runs or is written. Both must be cheap: no
    # training, no weights, no model construction beyond what a shape check needs.

    @classmethod
    def resolve_params(cls, params: Params, *, data_shape: tuple[int, ...],
                       num_classes: int | None = None) -> Params:
        """The hyper-parameters a run on this data actually uses: presets expanded, data-dependent
        defaults filled. The result is written to the run's ``config.json`` and is part of the run
        identity, so editing a preset table gives new run ids; ``__init__`` receives it back, and
        resolving an already resolved value must return it unchanged. Default: ``params`` as given."""
        return params

    @classmethod
    def check(cls, params: Params, *, data_shape: tuple[int, ...], num_classes: int | None = None) -> None:
        """Raise :class:`madlab.core.errors.ConfigError` (message starting with the key, e.g.
        ``generator.pac: ...``) if these resolved hyper-parameters cannot run on data of this
        shape. Constraints that ``Params`` alone cannot express (they depend on the data or on
        several fields) belong here, not first in ``__init__``. Default: no extra constraint."""

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
