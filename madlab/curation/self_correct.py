"""``self-correct``: move each synthetic sample towards the real data (Gillman et al., ICML 2024)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.stats import multivariate_normal
from sklearn.cluster import KMeans

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.curation.rewards import check_lenet_images, lenet_features
from madlab.plugins.curator import Curated, Curator, CuratorParams


class SelfCorrect(Curator):
    """Self-correction: x' = (1 − t) x + t c(x), c(x) a target the sample is paired with.

    ``method: gillman-toy`` is Gillman et al.'s Gaussian toy as their code runs it
    (``nate-gillman/self-correcting-self-consuming``, ``exp_scripts/gaussian_toy_example.py``, first
    version): the targets are n *fresh draws from the true distribution* (here: the dataset's own
    stream, which must be unlimited), paired one-to-one with the n samples by a minimum total
    Euclidean distance assignment (``cdist`` default metric, as the code), and the strength is
    t = γ / (1 + γ) for the paper's γ ≥ 0 (the weight the paper's operator π_γ = (p + γ p*) / (1 + γ)
    puts on the true distribution p*). ``method: gillman-toy-rejection`` is the code's current version
    (commit 756c50c): the n corrected samples are n draws, by rejection sampling with the true Gaussian
    as proposal, from (1 − t) · (the samples' 10-bins-per-axis histogram density) + t · (true density),
    with the code's bound M and its bin lookup (index truncated towards zero, 0 outside the bins); they
    are not paired with the samples. M is not a true bound (the histogram-to-proposal ratio grows in the
    tails), so, as in the code, the draws follow that mixture only approximately.

    madlab's own methods use γ ∈ [0, 1] as t itself and take their targets from the real data the
    generation trained on: ``method: kmeans`` (the paper's MNIST recipe at t = 1: 16 k-means centres per digit
    of the real training data; per class when both real and synthetic samples carry labels; for images
    ``space: lenet`` clusters LeNet features and uses the pixel mean of the nearest feature cluster),
    and ``method: assignment`` (vector data: a minimum-total-*squared*-distance assignment to the real
    training rows, the real set repeated when it is smaller; madlab's variant, not the paper's toy).
    t = 0 is the identity, t = 1 returns the targets.
    """

    name = "self-correct"
    data_kinds = frozenset({"vector", "image"})

    class Params(CuratorParams):
        gamma: float = Field(ge=0.0, description="correction strength: t = γ ∈ [0, 1] (kmeans, assignment), "
                                                 "t = γ/(1+γ) (gillman-toy*)")
        method: Literal["kmeans", "assignment", "gillman-toy", "gillman-toy-rejection"] = "kmeans"
        clusters: int = Field(16, ge=1, description="k-means centres (per class when labelled)")
        space: Literal["pixel", "lenet"] = Field("pixel", description="images: where k-means clusters")
        n_init: int = Field(3, ge=1, description="k-means restarts")

    @classmethod
    def check(cls, params, dataset) -> None:
        if params.method != "kmeans" and dataset.kind != "vector":
            raise ConfigError(f"loop.curation.method: {params.method!r} is defined for vector data; images use kmeans")
        if params.method == "gillman-toy" and dataset.size is not None:
            raise ConfigError(f"loop.curation.method: 'gillman-toy' corrects towards fresh draws from the true "
                              f"distribution; dataset {dataset.name!r} is finite (use an analytic one, e.g. gaussian)")
        if params.method == "gillman-toy-rejection" and dataset.true_gaussian() is None:
            raise ConfigError(f"loop.curation.method: 'gillman-toy-rejection' proposes from the true Gaussian; "
                              f"dataset {dataset.name!r} is not Gaussian (use gaussian)")
        if not params.method.startswith("gillman-toy") and params.gamma > 1:
            raise ConfigError(f"loop.curation.gamma: must be <= 1 for method {params.method!r} (the strength t = γ); "
                              f"got {params.gamma:g}")
        if params.space == "lenet":
            check_lenet_images(dataset, "loop.curation.space")

    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        batch = candidates.take(slice(0, n_keep))
        x = np.asarray(batch.x)
        flat = x.reshape(len(x), -1).astype(np.float64)
        if self.params.method == "gillman-toy-rejection":
            corrected = self._gillman_rejection(flat, seed)
            return Curated(Samples(corrected.reshape(x.shape).astype(x.dtype), batch.y))
        if self.params.method == "gillman-toy":
            targets = self._gillman_targets(flat, seed)
        elif self.params.method == "assignment":
            targets = self._assigned(flat, real.x.reshape(len(real), -1).astype(np.float64))
        else:
            targets = self._centres(batch, flat, real, seed)
        t = self.strength  # (1 - t) x + t c: exactly x at t = 0 and exactly c at t = 1
        corrected = (1.0 - t) * flat + t * targets
        return Curated(Samples(corrected.reshape(x.shape).astype(x.dtype), batch.y))

    @property
    def strength(self) -> float:
        """t: the weight of the target; the paper's γ/(1 + γ) for gillman-toy, γ itself otherwise."""
        gamma = self.params.gamma
        return gamma / (1.0 + gamma) if self.params.method.startswith("gillman-toy") else gamma

    def _gillman_targets(self, flat: np.ndarray, seed: int) -> np.ndarray:
        """n fresh draws of the true distribution, row i the one assigned to sample i (min total distance).

        The draws are the dataset's rows under the curation seed (derived from run seed and generation),
        a stream apart from the run's training rows (drawn under the run's "data" seed)."""
        fresh = np.asarray(self.dataset.draw(len(flat), seed=seed).x, dtype=np.float64)
        rows, cols = linear_sum_assignment(cdist(flat, fresh.reshape(len(fresh), -1)))
        out = np.empty_like(flat)
        out[rows] = fresh.reshape(len(fresh), -1)[cols]
        return out

    def _gillman_rejection(self, flat: np.ndarray, seed: int) -> np.ndarray:
        """n draws of (1 − t) hist + t p* by the code's rejection sampler; proposals are the dataset's rows
        under the curation seed at offsets 0, m, 2m, ... (m per round), uniforms from default_rng(seed)."""
        n, t = len(flat), self.strength
        mean, cov = self.dataset.true_gaussian()
        truth = multivariate_normal(mean, cov)
        hist, edges = np.histogramdd(flat, bins=10, density=True)
        peak = truth.pdf(mean)
        bound = ((1 - t) * hist.max() + t * peak) / peak
        rng, kept, offset = np.random.default_rng(seed), [], 0
        while sum(map(len, kept)) < n:
            size = max(2, int(np.ceil(2 * bound * n)))
            proposal = np.asarray(self.dataset.draw(size, seed=seed, offset=offset).x, dtype=np.float64)
            offset += size
            u = rng.uniform(size=size)
            density = truth.pdf(proposal)
            ratio = ((1 - t) * histogram_at(hist, edges, proposal) + t * density) / (bound * density)
            kept.append(proposal[ratio > u])
        return np.concatenate(kept)[:n]

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


def histogram_at(hist: np.ndarray, edges: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """The histogram's value at each row of ``x`` as Gillman et al.'s code looks it up: bin index
    int((x − first edge) / bin width) per axis (truncated towards zero, so up to one bin width left of
    the first edge still reads bin 0), 0 where an index falls outside the bins."""
    index = np.stack([np.trunc((x[:, k] - e[0]) / (e[1] - e[0])) for k, e in enumerate(edges)], 1).astype(np.int64)
    inside = ((index >= 0) & (index < np.array(hist.shape))).all(1)
    out = np.zeros(len(x))
    out[inside] = hist[tuple(index[inside].T)]
    return out
