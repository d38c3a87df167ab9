"""``detector``: importance resampling by a real-vs-synthetic classifier (Drayson et al., EMNLP 2025)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.curation.rewards import check_lenet_images, lenet_features
from madlab.plugins.curator import Curated, Curator, CuratorParams


class Detector(Curator):
    """Detector resampling: candidates importance-resampled with weights ∝ (1 − p_synthetic)^b.

    Drayson et al. train a machine-generated-text detector and resample the training data by
    importance weights from its probabilities, up-sampling what looks human. Here a logistic
    regression is trained each generation on the generation's real data (label 0) against the
    candidates (label 1), balanced, on the metric features: LeNet features for MNIST images,
    pixels for other images, degree-2 polynomial features for vectors (a linear detector cannot see
    a shrunken covariance). ``n_keep`` samples are drawn from the ``pool · n_keep`` candidates with
    probabilities ∝ (1 − p)^b (with replacement unless ``replace: false``). b = 0 is uniform.
    The reward reported is the detector's 1 − p_synthetic.
    """

    name = "detector"
    data_kinds = frozenset({"vector", "image"})

    class Params(CuratorParams):
        b: float = Field(1.0, ge=0.0, description="exponent of the importance weights")
        pool: float = Field(1.0, ge=1.0, description="candidates per kept sample")
        features: Literal["auto", "linear", "quadratic", "pixel", "lenet"] = "auto"
        C: float = Field(1.0, gt=0.0, description="inverse L2 strength of the logistic regression")
        replace: bool = True

    @classmethod
    def check(cls, params, dataset) -> None:
        if dataset.kind == "vector" and params.features in ("pixel", "lenet"):
            raise ConfigError(f"loop.curation.features: {params.features!r} is for images; vectors use "
                              f"linear or quadratic")
        if dataset.kind == "image" and params.features in ("linear", "quadratic"):
            raise ConfigError(f"loop.curation.features: {params.features!r} is for vectors; images use "
                              f"pixel or lenet")
        if params.features == "lenet":
            check_lenet_images(dataset, "loop.curation.features")

    @classmethod
    def candidates_per_kept(cls, params) -> float:
        return float(params.pool)

    def _features(self, samples: Samples) -> np.ndarray:
        kind = self.params.features
        if kind == "auto":
            if self.dataset.kind == "vector":
                kind = "quadratic"
            else:
                kind = "lenet" if tuple(self.dataset.shape) == (1, 28, 28) else "pixel"
        if kind == "lenet":
            return lenet_features(samples.x, self.device)
        flat = np.asarray(samples.x, dtype=np.float64).reshape(len(samples), -1)
        return PolynomialFeatures(2, include_bias=False).fit_transform(flat) if kind == "quadratic" else flat

    def synthetic_probability(self, candidates: Samples, real: Samples, seed: int) -> np.ndarray:
        """p_synthetic of each candidate under a detector trained on ``real`` vs ``candidates``."""
        fake, true = self._features(candidates), self._features(real)
        X = np.concatenate([true, fake])
        y = np.concatenate([np.zeros(len(true)), np.ones(len(fake))])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.params.C, class_weight="balanced",
                                                                   max_iter=2000, random_state=seed % 2**32))
        model.fit(X, y)
        return model.predict_proba(fake)[:, 1]

    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        pool = candidates.take(slice(0, int(np.ceil(self.params.pool * n_keep))))
        p = self.synthetic_probability(pool, real, seed)
        realness = 1.0 - p
        weights = realness ** self.params.b
        total = weights.sum()
        weights = weights / total if total > 0 else np.full(len(pool), 1.0 / len(pool))
        n = n_keep if self.params.replace else min(n_keep, len(pool))
        index = np.random.default_rng(seed).choice(len(pool), n, replace=self.params.replace, p=weights)
        return Curated(pool.take(index), index, float(realness.mean()), float(realness[index].mean()),
                       examined=len(pool))
