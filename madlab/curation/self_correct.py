"""``self-correct``: move each synthetic sample towards the real data (Gillman et al., ICML 2024)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.curation.rewards import check_lenet_images, lenet_features
from madlab.plugins.curator import Curated, Curator, CuratorParams


class SelfCorrect(Curator):
    """Self-correction: x' = x + γ (c(x) − x), c(x) a k-means centre of the real data or an assigned real sample.

    Gillman et al. correct each synthetic sample towards the data manifold with strength γ ∈ [0, 1]
    before retraining: on MNIST by snapping to k-means centres (16 per digit) of the real training
    data, in their Gaussian toy by an optimal-assignment correction. ``method: kmeans`` fits
    ``clusters`` centres to the generation's real data (per class when both real and synthetic
    samples carry labels) and takes the nearest; for images ``space: lenet`` clusters LeNet features
    and uses the pixel mean of the nearest feature cluster. ``method: assignment`` (vector data)
    pairs candidates one-to-one with real samples by a minimum-total-squared-distance assignment
    (scipy's ``linear_sum_assignment``; the real set is repeated when it is smaller). γ = 0 is the
    identity, γ = 1 returns the centres (or the assigned real samples).
    """

    name = "self-correct"
    data_kinds = frozenset({"vector", "image"})

    class Params(CuratorParams):
        gamma: float = Field(ge=0.0, le=1.0, description="correction strength γ")
        method: Literal["kmeans", "assignment"] = "kmeans"
        clusters: int = Field(16, ge=1, description="k-means centres (per class when labelled)")
        space: Literal["pixel", "lenet"] = Field("pixel", description="images: where k-means clusters")
        n_init: int = Field(3, ge=1, description="k-means restarts")

    @classmethod
    def check(cls, params, dataset) -> None:
        if params.method == "assignment" and dataset.kind != "vector":
            raise ConfigError("loop.curation.method: 'assignment' is defined for vector data; images use kmeans")
        if params.space == "lenet":
            check_lenet_images(dataset, "loop.curation.space")

    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        batch = candidates.take(slice(0, n_keep))
        x = np.asarray(batch.x)
        flat = x.reshape(len(x), -1).astype(np.float64)
        if self.params.method == "assignment":
            targets = self._assigned(flat, real.x.reshape(len(real), -1).astype(np.float64))
        else:
            targets = self._centres(batch, flat, real, seed)
        gamma = self.params.gamma  # (1 - γ) x + γ c: exactly x at γ = 0 and exactly c at γ = 1
        corrected = (1.0 - gamma) * flat + gamma * targets
        return Curated(Samples(corrected.reshape(x.shape).astype(x.dtype), batch.y))

    @staticmethod
    def _assigned(flat: np.ndarray, real: np.ndarray) -> np.ndarray:
        reps = -(-len(flat) // len(real))
        pool = np.tile(real, (reps, 1)) if reps > 1 else real
        rows, cols = linear_sum_assignment(cdist(flat, pool, "sqeuclidean"))
        out = np.empty_like(flat)
        out[rows] = pool[cols]
        return out

    def _centres(self, batch: Samples, flat: np.ndarray, real: Samples, seed: int) -> np.ndarray:
        real_flat = real.x.reshape(len(real), -1).astype(np.float64)
        lenet = self.params.space == "lenet"
        feats = lenet_features(batch.x, self.device) if lenet else flat
        real_feats = lenet_features(real.x, self.device) if lenet else real_flat
        groups = [(np.arange(len(flat)), np.arange(len(real)))]
        if batch.y is not None and real.y is not None:
            groups = [(np.flatnonzero(batch.y == c), np.flatnonzero(real.y == c)) for c in np.unique(batch.y)]
            groups = [(mine, theirs if len(theirs) else np.arange(len(real))) for mine, theirs in groups]
        targets = np.empty_like(flat)
        for i, (mine, theirs) in enumerate(groups):
            k = min(self.params.clusters, len(theirs))
            km = KMeans(k, n_init=self.params.n_init, random_state=(seed + i) % 2**32).fit(real_feats[theirs])
            nearest = km.predict(feats[mine])
            if lenet:  # the pixel mean of each feature cluster
                centres = np.stack([real_flat[theirs][km.labels_ == j].mean(0) for j in range(k)])
            else:
                centres = km.cluster_centers_
            targets[mine] = centres[nearest]
        return targets
