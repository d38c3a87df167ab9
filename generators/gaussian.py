"""The Gaussian generator of MAD §3.1: the model whose collapse has a closed form."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_serializer

from madlab.core.samples import Samples
from madlab.plugins.generator import Generator, Params


class GaussianParams(Params):
    fit: Literal["unbiased", "mle"] = Field(
        "unbiased", description="covariance divisor: n - 1 (MAD's fit) or n (maximum likelihood, as "
                                "sklearn's GaussianMixture, which Gillman et al.'s toy fits)")

    @model_serializer(mode="wrap")
    def _omit_default_fit(self, handler):
        """Left out at its default, so every Gaussian run from before this option keeps its run id."""
        data = handler(self)
        if data.get("fit") == "unbiased":
            del data["fit"]
        return data

    def ddof(self) -> int:
        return 1 if self.fit == "unbiased" else 0


class GaussianGenerator(Generator):
    """Multivariate Gaussian: fit by sample mean and unbiased (1/(n-1)) or MLE (1/n) covariance; sample N(mu, λΣ)."""

    name = "gaussian"
    Params = GaussianParams
    data_kinds = frozenset({"vector"})
    cheap = True
    min_fit_samples = 2
    model_metric_names = frozenset({"trace_cov", "mean_shift"})

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        (dim,) = self.data_shape
        self.mean = np.zeros(dim)
        self.cov = np.eye(dim)

    def fit(self, data, *, seed):
        x = np.asarray(data.x, dtype=np.float64)
        self.mean = x.mean(0)
        self.cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=self.params.ddof()))

    def sample(self, n, *, bias, seed):
        rng = np.random.default_rng(seed)
        # Cholesky of a PSD matrix that may be singular (n <= d): use the symmetric square root.
        w, v = np.linalg.eigh(bias * self.cov)
        root = v * np.sqrt(np.clip(w, 0, None))
        return Samples(self.mean + rng.standard_normal((n, len(self.mean))) @ root.T)

    def state_dict(self):
        return {"mean": self.mean, "cov": self.cov}

    def load_state_dict(self, state):
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.cov = np.asarray(state["cov"], dtype=np.float64)

    def model_metrics(self, dataset):
        real = dataset.true_gaussian()
        real_mean = real[0] if real is not None else np.zeros_like(self.mean)
        return {"trace_cov": float(np.trace(self.cov)),
                "mean_shift": float(np.linalg.norm(self.mean - real_mean))}

    def sampling_gaussian(self, bias):
        return self.mean, bias * self.cov

    #: the batched form (madlab.engine.batched): many runs fitted and sampled as stacked arrays
    batched = "madlab_generators.gaussian_batch:BatchedGaussian"
