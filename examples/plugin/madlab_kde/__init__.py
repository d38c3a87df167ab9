"""A worked third-party generator plugin for madlab: a Gaussian kernel density estimator.

Install it next to madlab (``pip install -e examples/plugin``) and ``madlab generators``
lists ``kde``; a loop spec selects it with ``generator: {name: kde, bandwidth: 0.2}``.

A KDE is the simplest generator that memorises its training set, which makes it a useful
contrast in self-consuming loops: with λ = 1 each generation adds kernel noise to resampled
points (the variance grows), with small λ it copies points (the support shrinks).
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from madlab.plugins import ConfigError, Generator, Params, Samples

__version__ = "0.1.0"


class KDEGenerator(Generator):
    """Gaussian KDE on vectors: resample a training point, add N(0, λ h² Σ̂) noise (Σ̂: data covariance)."""

    name = "kde"
    data_kinds = frozenset({"vector"})
    cheap = True
    min_fit_samples = 2

    class Params(Params):
        bandwidth: float | None = Field(None, gt=0, description="kernel scale h; None = Scott's rule n^(-1/(d+4))")
        max_points: int = Field(100_000, ge=2, description="training points kept (a seeded subsample beyond)")

    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        """Validate-time rule that depends on the data: the kernel covariance is estimated from at
        most ``max_points`` rows, which must be more than the dimension for it to have full rank."""
        (dim,) = data_shape
        if params.max_points <= dim:
            raise ConfigError(f"generator.max_points: {params.max_points} points cannot give a full-rank "
                              f"{dim}-d kernel covariance (need > {dim})")

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.check(params, data_shape=self.data_shape)
        (self.dim,) = self.data_shape
        self.points = np.zeros((0, self.dim))
        self.kernel_root = np.eye(self.dim)

    def fit(self, data, *, seed):
        x = np.asarray(data.x, dtype=np.float64)
        if len(x) > self.params.max_points:
            x = x[np.random.default_rng(seed).choice(len(x), self.params.max_points, replace=False)]
        h = self.params.bandwidth or len(x) ** (-1.0 / (self.dim + 4))
        cov = np.atleast_2d(np.cov(x, rowvar=False)) * h**2
        w, v = np.linalg.eigh(cov)
        self.points, self.kernel_root = x, v * np.sqrt(np.clip(w, 0, None))

    def sample(self, n, *, bias, seed):
        if not len(self.points):
            raise RuntimeError("kde: sample() before fit()")
        rng = np.random.default_rng(seed)
        centres = self.points[rng.integers(0, len(self.points), n)]
        noise = rng.standard_normal((n, self.dim)) @ self.kernel_root.T
        return Samples(centres + np.sqrt(bias) * noise)

    def state_dict(self):
        return {"points": self.points, "kernel_root": self.kernel_root}

    def load_state_dict(self, state):
        self.points = np.asarray(state["points"], dtype=np.float64)
        self.kernel_root = np.asarray(state["kernel_root"], dtype=np.float64)
