"""Memorisation and novelty: how close generated samples lie to the data the model was trained on.

Quality and diversity metrics (FID, precision/recall, density/coverage, Vendi) reward a generator
that hands back its training set. These metrics separate copying from generalising; each is scored
against the generation's *own training set* (``authenticity``, ``novelty``, ``copy_rate``) and
against held-out real data (the ``_heldout`` twins), so a memorising model shows as a gap between
the two. On features for images (the extractor's) and text (``text-lm``), on raw coordinates for vectors.

Definitions (``d1``, ``d2``: a sample's distances to its nearest and second-nearest reference row;
``r``: a reference row's distance to its nearest *other* reference row):

* ``authenticity`` — Alaa et al. 2022 ("How Faithful is your Synthetic Data?", arXiv 2102.08921,
  Sec. 3.3): a sample is authentic unless it is closer to its nearest reference row than that row is
  to its own nearest neighbour, ``d1 > r(nn)``; the share of authentic samples. The widely copied
  reference code (synthcity's ``AlphaPrecision``) loops over *real* rows and indexes the real-real
  distances with a *synthetic* index; we follow the paper's per-sample definition and test against a
  brute-force loop instead. A sample equal to a reference row has ``d1 = 0`` and is never authentic.
* ``novelty`` — the mean of ``d1 / mean(r)``: the nearest-training-neighbour distance relative to the
  training set's own nearest-neighbour distances (Shi et al. 2025, arXiv 2509.16499, track the mean
  nearest-training-neighbour distance as their generalisation score). A fresh draw from the training
  distribution scores about 1 (a training row's nearest other row is such a distance), an exact copy 0.
  ``novelty_q10/q50/q90``: quantiles of the same ratio. A reference set whose rows all have a duplicate
  has ``mean(r) = 0``: the ratio is then 0 for copies and +inf for any other sample.
* ``copy_rate`` — the share of samples with ``d1 < COPY_RATIO * d2`` (or ``d1 = 0``): their nearest
  reference row is much closer than the second nearest. The ratio 1/3 is the memorisation criterion
  of Yoon et al. 2023 ("Diffusion probabilistic models generalize when they fail to memorize") and
  Gu et al. 2023 ("On memorization in diffusion models", arXiv 2310.02664). An exact copy is always a
  copy, also of a reference row that is itself duplicated (``d1 = d2 = 0``).
* ``train_entropy`` — the Kozachenko–Leonenko k-NN estimate of the training set's differential entropy
  (nats), ``psi(N) - psi(k) + log V_d + (d / N) sum_i log eps_i`` with ``eps_i`` the distance of row i to
  its k-th nearest other row and ``V_d`` the volume of the unit d-ball (Kozachenko & Leonenko 1987;
  Kraskov et al. 2004, eq. 20), k = ``metrics.k``; Shi et al.'s indicator of collapse. A training set
  in which some row has k exact duplicates has ``eps_i = 0``: the estimate is then -inf, which is the
  differential entropy of a distribution with an atom (no jitter hides it). NaN when N <= k.

No maintained package computes these on a feature matrix (synthcity's authenticity differs as said;
it and its dependencies are far heavier than the dozen lines here), so they are written on the
duplicate-exact distance blocks of :mod:`madlab.metrics.knn` and tested against brute force.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import digamma, gammaln

from madlab.metrics.knn import exact_cdist, row_ids
from madlab.metrics.registry import MEMORISATION_NAMES

#: d1 / d2 below this marks a copy (Yoon et al. 2023; Gu et al. 2023)
COPY_RATIO = 1.0 / 3.0
#: the novelty quantiles reported beside the mean
QUANTILES = (0.1, 0.5, 0.9)
HELDOUT = "_heldout"
METRICS = MEMORISATION_NAMES
#: those scored against held-out real data, and those against the training set (train_entropy aside)
AGAINST_HELDOUT = tuple(name for name in METRICS if name.endswith(HELDOUT))
AGAINST_TRAIN = tuple(name for name in METRICS if name not in AGAINST_HELDOUT and name != "train_entropy")


#: largest distance block (query rows x reference rows) held at once: 64 MB of float32
BLOCK_ELEMENTS = 2**24


def _blocks(n_query: int, n_reference: int):
    """Row slices of the queries so a block stays within BLOCK_ELEMENTS (a 60k-row training set is scored
    256 query rows at a time)."""
    step = max(1, BLOCK_ELEMENTS // max(1, n_reference))
    return [slice(i, i + step) for i in range(0, n_query, step)]


def _tensor(x) -> torch.Tensor:
    """float64 stays float64 (vectors), everything else float32 (features), as :mod:`madlab.metrics.knn`."""
    x = torch.as_tensor(np.asarray(x))
    return x if x.dtype == torch.float64 else x.float()


@dataclass
class Reference:
    """What a reference set contributes, computed once: rows, their ids (exact copies), and each row's
    distances to its nearest and k-th nearest other row."""

    x: torch.Tensor
    ids: torch.Tensor
    nn1: np.ndarray
    nnk: np.ndarray | None
    k: int

    @classmethod
    def of(cls, x, k: int = 1) -> "Reference":
        x = _tensor(x)
        if len(x) < 2:
            raise ValueError(f"a memorisation reference set needs at least 2 rows, got {len(x)}")
        (ids,) = row_ids(x.numpy())
        kk = min(k, len(x) - 1)
        nearest = [torch.topk(exact_cdist(x[rows], x, ids[rows], ids), kk + 1, dim=1, largest=False).values
                   for rows in _blocks(len(x), len(x))]
        nearest = torch.cat(nearest).double().numpy()  # column 0 is the row itself, at distance exactly 0
        return cls(x, ids, nearest[:, 1], nearest[:, k] if k < len(x) else None, k)

    def entropy(self) -> float:
        """Kozachenko–Leonenko estimate (nats) with this reference's k; NaN if it has no k-th neighbour."""
        if self.nnk is None:
            return float("nan")
        n, d = self.x.shape
        log_unit_ball = (d / 2) * np.log(np.pi) - gammaln(d / 2 + 1)
        with np.errstate(divide="ignore"):
            mean_log = np.log(self.nnk).mean()
        return float(digamma(n) - digamma(self.k) + log_unit_ball + d * mean_log)


def nearest_two(reference: Reference, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each sample's distance to its nearest and second-nearest reference row, and the nearest row's index."""
    x = _tensor(samples).to(reference.x.dtype)
    ids = row_ids(x.numpy(), reference.x.numpy())
    values, index = [], []
    for rows in _blocks(len(x), len(reference.x)):
        block = exact_cdist(x[rows], reference.x, ids[0][rows], ids[1])
        top = torch.topk(block, 2, dim=1, largest=False)
        values.append(top.values)
        index.append(top.indices[:, 0])
    values = torch.cat(values).double().numpy()
    return values[:, 0], values[:, 1], torch.cat(index).numpy()


def memorisation(reference: Reference, samples, suffix: str = "", quantiles: bool = True) -> dict[str, float]:
    """``authenticity``, ``novelty`` (and its quantiles) and ``copy_rate`` of ``samples`` against ``reference``
    (names end in ``suffix``)."""
    d1, d2, nearest = nearest_two(reference, samples)
    scale = reference.nn1.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d1 / scale if scale > 0 else np.where(d1 > 0, np.inf, 0.0)
    out = {"authenticity": float((d1 > reference.nn1[nearest]).mean()),
           "novelty": float(ratio.mean()),
           "copy_rate": float(((d1 < COPY_RATIO * d2) | (d1 == 0)).mean())}
    if quantiles:
        with np.errstate(invalid="ignore"):  # inf ratios (a duplicate-only reference) interpolate to NaN
                out.update({f"novelty_q{round(q * 100)}": float(np.quantile(ratio, q)) for q in QUANTILES})
    return {name + suffix: value for name, value in out.items()}


def memorisation_metrics(samples, train=None, heldout: Reference | None = None, *, k: int = 5,
                         wanted=lambda name: True) -> dict[str, float]:
    """Every wanted memorisation metric of ``samples``: against ``train`` (an array; skipped when None)
    and against the ``heldout`` reference (kept by the caller for the run)."""
    out: dict[str, float] = {}
    if train is not None and any(wanted(n) for n in AGAINST_TRAIN + ("train_entropy",)):
        reference = Reference.of(train, k)
        if any(wanted(n) for n in AGAINST_TRAIN):
            out.update(memorisation(reference, samples))
        if wanted("train_entropy"):
            out["train_entropy"] = reference.entropy()
    if heldout is not None and any(wanted(n) for n in AGAINST_HELDOUT):
        out.update(memorisation(heldout, samples, suffix=HELDOUT, quantiles=False))
    return {name: value for name, value in out.items() if wanted(name)}


def wants_memorisation(wanted) -> bool:
    return any(wanted(name) for name in METRICS)


__all__ = ["COPY_RATIO", "METRICS", "Reference", "memorisation", "memorisation_metrics", "nearest_two"]
