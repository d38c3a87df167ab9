"""Rewards r(x) that best-of-K curation (Ferbach et al., NeurIPS 2024) chooses by.

Each reward is a small pydantic model selected by ``name`` inside a curator's ``reward`` mapping,
e.g. ``reward: {name: linear, w: [1.0, 0.0]}``. ``check(dataset)`` is the validate-time test that
the reward is defined for the run's data (a log-density needs a dataset that knows its density;
the classifier needs 28x28 grey images), ``scores(samples)`` evaluates it batched.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal, Union

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.features import feature_extractor_lenet as lenet
from madlab.plugins.generator import Params


def _vector_only(reward: str, dataset, key: str) -> None:
    if dataset.kind != "vector":
        raise ConfigError(f"{key}.name: reward {reward!r} is defined for vector data, not {dataset.kind} "
                          f"(dataset {dataset.name!r})")


class LinearReward(Params):
    """r(x) = w·x."""

    name: Literal["linear"]
    w: list[float] = Field(min_length=1)

    def check(self, dataset, key: str) -> None:
        _vector_only("linear", dataset, key)
        if len(self.w) != dataset.shape[0]:
            raise ConfigError(f"{key}.w: has {len(self.w)} entries, the data has dimension {dataset.shape[0]}")

    def scores(self, samples: Samples, dataset, device: str = "cpu") -> np.ndarray:
        return np.asarray(samples.x, dtype=np.float64) @ np.asarray(self.w, dtype=np.float64)


class DistanceReward(Params):
    """r(x) = -scale · ||x - target||: closeness to a target point (Ferbach's mixture experiment)."""

    name: Literal["distance"]
    target: list[float] = Field(min_length=1)
    scale: float = Field(1.0, gt=0)

    def check(self, dataset, key: str) -> None:
        _vector_only("distance", dataset, key)
        if len(self.target) != dataset.shape[0]:
            raise ConfigError(f"{key}.target: has {len(self.target)} entries, the data has dimension "
                              f"{dataset.shape[0]}")

    def scores(self, samples: Samples, dataset, device: str = "cpu") -> np.ndarray:
        diff = np.asarray(samples.x, dtype=np.float64) - np.asarray(self.target, dtype=np.float64)
        return -self.scale * np.linalg.norm(diff, axis=1)


class LogDensityReward(Params):
    """r(x) = log p(x) under the true data distribution (datasets that know it)."""

    name: Literal["log-density"]

    def check(self, dataset, key: str) -> None:
        _vector_only("log-density", dataset, key)
        if not dataset.knows_density:
            raise ConfigError(f"{key}.name: reward 'log-density' needs a dataset that knows its density "
                              f"(gaussian, gmm25, rosenbrock), not {dataset.name!r}")

    def scores(self, samples: Samples, dataset, device: str = "cpu") -> np.ndarray:
        return dataset.log_density(np.asarray(samples.x, dtype=np.float64))


class ClassifierReward(Params):
    """r(x) = log p(target | x) under the pinned LeNet classifier, or log max_c p(c | x) without a target."""

    name: Literal["classifier"]
    target: int | None = Field(None, ge=0, le=9)

    def check(self, dataset, key: str) -> None:
        check_lenet_images(dataset, key)

    def scores(self, samples: Samples, dataset, device: str = "cpu") -> np.ndarray:
        logp = lenet_log_probs(samples.x, device)
        return logp[:, self.target] if self.target is not None else logp.max(1)


Reward = Annotated[Union[LinearReward, DistanceReward, LogDensityReward, ClassifierReward],
                   Field(discriminator="name")]


def check_lenet_images(dataset, key: str) -> None:
    if dataset.kind != "image" or tuple(dataset.shape) != (1, 28, 28):
        raise ConfigError(f"{key}: the LeNet classifier needs 28x28 grey images (MNIST), dataset "
                          f"{dataset.name!r} has {dataset.kind} data of shape {tuple(dataset.shape)}")


@lru_cache(maxsize=4)
def _lenet(device: str):
    """The pinned ``lenet-mnist`` network (trained once and cached, see madlab.features)."""
    model = lenet.LeNet()
    model.load_state_dict(load_file(str(lenet.ensure_lenet_weights())))
    return model.eval().requires_grad_(False).to(device)


def _lenet_forward(images: np.ndarray, device: str, *, features: bool, batch_size: int = 1000) -> np.ndarray:
    model = _lenet(device)  # outside no_grad: the first use trains the network
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32)).to(device)
            h = model.features(x)
            out.append((h if features else torch.log_softmax(model.fc2(h), 1)).double().cpu())
    return torch.cat(out).numpy()


def lenet_log_probs(images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(n, 10) class log-probabilities of images in [-1, 1], batched on ``device``."""
    return _lenet_forward(images, device, features=False)


def lenet_features(images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(n, 128) penultimate-layer LeNet features (the metric features of MNIST runs)."""
    return _lenet_forward(images, device, features=True)
