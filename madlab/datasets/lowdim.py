"""Low-dimensional real distributions of MAD's theory and toy experiments."""
from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.special import logsumexp

from madlab.core.samples import Samples
from madlab.plugins.dataset import Dataset
from madlab.plugins.generator import Params


def _rng(seed: int, offset: int, salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, offset, salt]))


class GaussianDataset(Dataset):
    """N(0, I_d): the setting of MAD §3.1 where collapse has a closed form."""

    name = "gaussian"

    class Params(Params):
        dim: int = Field(2, ge=1, le=10_000)

    @property
    def shape(self):
        return (self.params.dim,)

    def draw(self, n, *, seed, offset=0):
        return Samples(_rng(seed, offset, 1).standard_normal((n, self.params.dim)))

    def true_gaussian(self):
        d = self.params.dim
        return np.zeros(d), np.eye(d)

    knows_density = True

    def log_density(self, x):
        x = np.asarray(x, dtype=np.float64)
        return -0.5 * (x**2).sum(1) - 0.5 * self.params.dim * np.log(2 * np.pi)


class GMM25Dataset(Dataset):
    """25 isotropic Gaussians on a 5x5 grid (MAD Appendix B.2), equal weights.

    Centres at {-2, -1, 0, 1, 2} * spacing on each axis, standard deviation ``std``.
    """

    name = "gmm25"
    extra_metric_names = frozenset({"modes", "hq_fraction"})

    class Params(Params):
        spacing: float = Field(2.0, gt=0)
        std: float = Field(0.05, gt=0)

    @property
    def shape(self):
        return (2,)

    @property
    def num_classes(self):
        return 25

    @property
    def centres(self) -> np.ndarray:
        axis = (np.arange(5) - 2) * self.params.spacing
        return np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)

    def draw(self, n, *, seed, offset=0):
        rng = _rng(seed, offset, 2)
        labels = rng.integers(0, 25, n)
        x = self.centres[labels] + self.params.std * rng.standard_normal((n, 2))
        return Samples(x, labels.astype(np.int64))

    knows_density = True

    def log_density(self, x):
        """log of the equal-weight mixture: logsumexp over the 25 isotropic components."""
        x = np.asarray(x, dtype=np.float64)
        s2 = self.params.std**2
        d2 = ((x[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return logsumexp(-0.5 * d2 / s2, axis=1) - np.log(25) - np.log(2 * np.pi * s2)

    def extra_metrics(self, fake):
        """Modes covered and high-quality fraction, as in the mode-collapse literature.

        A sample is high quality when within 3 std of its nearest centre; a mode is covered
        when it holds at least one high-quality sample and at least 1% of the per-mode count
        a perfect generator would give (len(fake) / 25).
        """
        d2 = ((fake.x[:, None, :] - self.centres[None]) ** 2).sum(-1)
        nearest = d2.argmin(1)
        good = np.sqrt(d2[np.arange(len(fake)), nearest]) <= 3 * self.params.std
        counts = np.bincount(nearest[good], minlength=25)
        threshold = max(1.0, 0.01 * len(fake) / 25)
        return {"modes": float((counts >= threshold).sum()), "hq_fraction": float(good.mean())}


class RosenbrockDataset(Dataset):
    """The Rosenbrock ("banana") density of MAD Appendix B.4, sampled exactly.

    p(x1, x2) ∝ exp(-[(a - x1)^2 + b (x2 - x1^2)^2] / temperature), the form of Goodman &
    Weare (2010) with a=1, b=100, temperature=20; ancestral sampling:
    x1 ~ N(a, temperature/2), x2 | x1 ~ N(x1^2, temperature/(2b)).
    """

    name = "rosenbrock"

    class Params(Params):
        a: float = 1.0
        b: float = Field(100.0, gt=0)
        temperature: float = Field(20.0, gt=0)

    @property
    def shape(self):
        return (2,)

    def draw(self, n, *, seed, offset=0):
        p = self.params
        rng = _rng(seed, offset, 3)
        x1 = p.a + np.sqrt(p.temperature / 2) * rng.standard_normal(n)
        x2 = x1**2 + np.sqrt(p.temperature / (2 * p.b)) * rng.standard_normal(n)
        return Samples(np.stack([x1, x2], 1))

    knows_density = True

    def log_density(self, x):
        """The normalised density of the ancestral factorisation N(x1; a, T/2) N(x2; x1^2, T/(2b))."""
        p, x = self.params, np.asarray(x, dtype=np.float64)
        v1, v2 = p.temperature / 2, p.temperature / (2 * p.b)
        return (-0.5 * (x[:, 0] - p.a) ** 2 / v1 - 0.5 * np.log(2 * np.pi * v1)
                - 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2 / v2 - 0.5 * np.log(2 * np.pi * v2))
