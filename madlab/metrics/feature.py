"""The seven image metrics on two feature sets: FID, KID, precision, recall, density, coverage, Vendi.

Built on torch-fidelity where it has the metric: its FID statistics (``fid_features_to_statistics``),
its KID (``kid_features_to_metric``, same polynomial kernel, subsets and seed, so values match
``torch_fidelity.calculate_metrics`` on the same features). Precision and recall come from the
shared k-NN computation of :mod:`madlab.metrics.knn` that also gives density and coverage, so the
three distance blocks are computed once for four metrics instead of twice; they equal
torch-fidelity's PR with ``prc_neighborhood=k``. Vendi: cosine kernel in the d x d dual form
(:func:`madlab.metrics.vendi.vendi_cosine`), on the fake features as given (the loop always passes
the same number, ``metrics.n_eval``, so values are comparable across generations).

Everything that depends on the real set alone (features, mean/covariance and its square root,
k-NN radii) lives in :class:`RealStats`, computed once per run and reused by every generation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

from madlab.core.errors import ConfigError
from madlab.metrics.knn import knn_radii, prdc
from madlab.metrics.linalg import psd_sqrt
from madlab.metrics.registry import metric_names
from madlab.metrics.vendi import vendi_cosine

METRIC_NAMES = metric_names("image")
#: torch-fidelity's defaults, kept so numbers are comparable with its tables.
KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 1000, 2020


@dataclass
class RealStats:
    """What the metrics need from the real features; fixed for a run, so computed once."""

    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    sqrt_sigma: np.ndarray
    radii: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_features(cls, features, k: int | None = None) -> "RealStats":
        features = _check_features(features, "real")
        if len(features) < 2:
            raise ConfigError(f"metrics need at least 2 real samples, got {len(features)}")
        stats = fid_features_to_statistics(torch.from_numpy(features))
        stats = cls(features, stats["mu"], stats["sigma"], psd_sqrt(stats["sigma"]))
        if k is not None:
            stats.radii_for(k)
        return stats

    def radii_for(self, k: int) -> np.ndarray:
        if k not in self.radii:
            self.radii[k] = knn_radii(self.features, k)
        return self.radii[k]

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"features": self.features, "mu": self.mu, "sigma": self.sigma, "sqrt_sigma": self.sqrt_sigma}
        out.update({f"radii_k{k}": r for k, r in self.radii.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "RealStats":
        radii = {int(name[len("radii_k"):]): np.asarray(arrays[name]) for name in arrays if name.startswith("radii_k")}
        return cls(np.asarray(arrays["features"]), np.asarray(arrays["mu"]), np.asarray(arrays["sigma"]),
                   np.asarray(arrays["sqrt_sigma"]), radii)


def _check_features(x, which: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{which} features must be a 2-D array (samples, dims), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{which} features contain NaN or inf")
    return np.ascontiguousarray(x)


def frechet_distance(real: RealStats, mu: np.ndarray, sigma: np.ndarray) -> float:
    """FID = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr sqrt(S_r S_f).

    torch-fidelity takes tr sqrt(S_r S_f) from the general eigenvalues of the non-symmetric product
    (O(d^3) with a large constant: seconds at d=2048). S_r S_f is similar to the
    symmetric PSD matrix A S_f A with A = sqrt(S_r), whose eigenvalues ``eigvalsh`` finds several
    times faster and without spurious imaginary parts; A is cached with the real statistics.
    Agreement with torch-fidelity's formula is pinned by the tests.
    """
    diff = real.mu - mu
    m = real.sqrt_sigma @ sigma @ real.sqrt_sigma
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(diff @ diff + np.trace(real.sigma) + np.trace(sigma) - 2 * tr_covmean)


def resolve_kid_subset_size(requested: int | None, n_real: int, n_fake: int) -> int:
    """The KID subset size: ``requested`` if the samples hold it, else a clear error.

    ``None`` means torch-fidelity's 1000, lowered to the smaller sample when that is smaller
    (a loop scoring 500 samples should not fail on a default it never chose).
    """
    smaller = min(n_real, n_fake)
    if requested is None:
        size = min(KID_SUBSET_SIZE, smaller)
    else:
        if requested > smaller:
            raise ConfigError(f"metrics.kid_subset_size={requested} exceeds the number of samples scored "
                              f"(real {n_real}, fake {n_fake}); lower it or raise metrics.n_eval")
        size = requested
    if size < 2:
        raise ConfigError(f"KID needs subsets of at least 2 samples, got {size}")
    return size


def check_k(k: int, n_real: int, n_fake: int) -> None:
    if not 1 <= k < min(n_real, n_fake):
        raise ConfigError(f"metrics.k={k} must be at least 1 and smaller than the number of samples "
                          f"(real {n_real}, fake {n_fake})")


def feature_metrics(real, fake, k: int = 5, *, names=None, kid_subset_size: int | None = None,
                    kid_subsets: int = KID_SUBSETS, seed: int = KID_SEED) -> dict[str, float]:
    """FID, KID, precision, recall, density, coverage and Vendi of ``fake`` against ``real``.

    ``real``: a 2-D feature array or a :class:`RealStats` kept from an earlier call (only the fake
    side is then computed). ``names`` restricts the metrics computed. ``kid_subset_size`` is
    validated by :func:`resolve_kid_subset_size`; ``k`` must be smaller than both sample sizes.
    """
    names = METRIC_NAMES if names is None else tuple(names)
    unknown = sorted(set(names) - set(METRIC_NAMES))
    if unknown:
        raise ConfigError(f"metrics.names: unknown image metric(s) {', '.join(unknown)} "
                          f"(known: {', '.join(METRIC_NAMES)})")
    real = real if isinstance(real, RealStats) else RealStats.from_features(real)
    fake = _check_features(fake, "fake")
    if fake.shape[1] != real.features.shape[1]:
        raise ValueError(f"real features have {real.features.shape[1]} dims, fake {fake.shape[1]}")
    n_real, n_fake = len(real.features), len(fake)
    out: dict[str, float] = {}
    if "fid" in names:
        if n_fake < 2:
            raise ConfigError(f"FID needs at least 2 fake samples, got {n_fake}")
        stats = fid_features_to_statistics(torch.from_numpy(fake))
        out["fid"] = frechet_distance(real, stats["mu"], stats["sigma"])
    if "kid" in names:
        size = resolve_kid_subset_size(kid_subset_size, n_real, n_fake)
        kid = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real.features), kid_subsets=kid_subsets,
                                     kid_subset_size=size, rng_seed=seed, verbose=False)
        out["kid"] = kid[KEY_METRIC_KID_MEAN]
    if {"precision", "recall", "density", "coverage"} & set(names):
        check_k(k, n_real, n_fake)
        out.update(prdc(real.features, fake, k, real_radii=real.radii_for(k)))
    if "vendi" in names:
        out["vendi"] = vendi_cosine(fake)
    return {name: float(out[name]) for name in METRIC_NAMES if name in names}


def explicit_kid_subset_size(cfg) -> int | None:
    """The user's ``kid_subset_size``, or None when it is only the default (then it may be lowered)."""
    value = getattr(cfg, "kid_subset_size", None)
    fields_set = getattr(cfg, "model_fields_set", None)
    if value is None or (fields_set is not None and "kid_subset_size" not in fields_set):
        return None
    return int(value)
