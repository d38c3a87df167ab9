"""Gaussian mixture generator on scikit-learn's EM implementation."""
from __future__ import annotations

import warnings

import numpy as np
from pydantic import Field
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from madlab.core.samples import Samples
from madlab.plugins.generator import Generator, Params


class GMMGenerator(Generator):
    """Gaussian mixture (scikit-learn EM); λ scales every component covariance."""

    name = "gmm"
    data_kinds = frozenset({"vector"})
    cheap = True

    class Params(Params):
        n_components: int = Field(25, ge=1)
        covariance_type: str = Field("full", pattern="^(full|diag|spherical)$")
        max_iter: int = Field(200, ge=1)
        n_init: int = Field(1, ge=1)
        reg_covar: float = Field(1e-6, gt=0)

    @classmethod
    def min_train_size(cls, params):  # EM needs at least one sample per component
        return params.n_components

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.weights = None
        self.means = None
        self.covariances = None

    def fit(self, data, *, seed):
        p = self.params
        if len(data) < p.n_components:
            raise ValueError(f"gmm needs at least n_components={p.n_components} samples, got {len(data)}")
        model = GaussianMixture(p.n_components, covariance_type=p.covariance_type, max_iter=p.max_iter,
                                n_init=p.n_init, reg_covar=p.reg_covar, random_state=seed % 2**32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(np.asarray(data.x, dtype=np.float64))
        d = data.x.shape[1]
        cov = model.covariances_
        if p.covariance_type == "diag":
            cov = np.stack([np.diag(c) for c in cov])
        elif p.covariance_type == "spherical":
            cov = cov[:, None, None] * np.eye(d)
        self.weights, self.means, self.covariances = model.weights_, model.means_, cov

    def sample(self, n, *, bias, seed):
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, self.weights / self.weights.sum())
        labels = np.repeat(np.arange(len(counts)), counts)
        out = np.empty((n, self.means.shape[1]))
        for k in np.flatnonzero(counts):
            idx = labels == k
            w, v = np.linalg.eigh(bias * self.covariances[k])
            root = v * np.sqrt(np.clip(w, 0, None))
            out[idx] = self.means[k] + rng.standard_normal((counts[k], len(w))) @ root.T
        perm = rng.permutation(n)
        return Samples(out[perm])

    def state_dict(self):
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    def load_state_dict(self, state):
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.means = np.asarray(state["means"], dtype=np.float64)
        self.covariances = np.asarray(state["covariances"], dtype=np.float64)
