"""Metrics for low-dimensional (vector) data, scored on the raw coordinates."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist

from madlab.metrics.knn import knn_radii, prdc
from madlab.metrics.linalg import psd_sqrt, symmetrised
from madlab.metrics.vendi import vendi_rbf

#: Largest sample the exact empirical W2 and the RBF Vendi score are computed on (O(n^3), O(n^2)).
MAX_EXACT = 1000


def w2_gaussian(mean1, cov1, mean2, cov2) -> float:
    """Closed-form Wasserstein-2 distance between two Gaussians.

    W2^2 = |m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S2^1/2 S1 S2^1/2)^1/2; the last trace is the sum of
    the square roots of that symmetric PSD product's eigenvalues (``eigvalsh``: no eigenvectors,
    no matrix square root: cheaper, and theory sweeps pay it every generation).
    """
    mean1, mean2 = np.asarray(mean1, float), np.asarray(mean2, float)
    root2 = psd_sqrt(symmetrised(np.asarray(cov2, float)))
    product = root2 @ np.asarray(cov1, float) @ root2
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    value = np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross
    return float(np.sqrt(max(value, 0.0)))


def w2_empirical(x, y) -> float:
    """Exact W2 between two equal-size empirical distributions (uniform weights).

    With equal sizes the optimal coupling is a permutation, so the Hungarian algorithm
    (scipy's linear_sum_assignment) solves the transport problem exactly. It is the plug-in
    estimate of W2 between the underlying distributions and is biased upwards for small n.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


class LowDimEvaluator:
    """Scores generated vector samples against a fixed real reference set of one run.

    Precision/recall/density/coverage use k-NN balls on the raw coordinates (the real balls are
    computed once). Vendi uses an RBF kernel whose bandwidth is the median pairwise distance of
    the real set, fixed for the run so values compare across generations (the cosine kernel of
    the image metrics only sees angles, which in 2-D caps the score at 2). W2 is closed form when
    both the real distribution and the generator's sampling distribution are Gaussian, else
    the exact empirical W2 on up to MAX_EXACT samples.
    """

    def __init__(self, dataset, metrics_cfg, real_eval):
        self.dataset = dataset
        self.k = metrics_cfg.k
        self.real = np.asarray(real_eval.x, dtype=np.float64)
        self.real_radii = knn_radii(self.real, self.k)
        self.bandwidth = float(np.median(pdist(self.real[:MAX_EXACT]))) or 1.0
        self.true_gaussian = dataset.true_gaussian()
        self.names = set(metrics_cfg.names) if metrics_cfg.names is not None else None
        self.metadata = {"extractor": "identity", "extractor_hash": ""}

    def __call__(self, fake, sampling_gaussian=None) -> dict[str, float]:
        x = np.asarray(fake.x, dtype=np.float64)
        wanted = (lambda name: True) if self.names is None else self.names.__contains__
        scores = {}
        if any(wanted(m) for m in ("precision", "recall", "density", "coverage")):
            scores.update(prdc(self.real, x, k=self.k, real_radii=self.real_radii))
        if wanted("vendi"):
            scores["vendi"] = vendi_rbf(x[:MAX_EXACT], self.bandwidth)
        if wanted("w2"):
            if sampling_gaussian is not None and self.true_gaussian is not None:
                scores["w2"] = w2_gaussian(*sampling_gaussian, *self.true_gaussian)
            else:
                scores["w2"] = w2_empirical(x[:MAX_EXACT], self.real[:MAX_EXACT])
        return scores


__all__ = ["LowDimEvaluator", "w2_gaussian", "w2_empirical"]
