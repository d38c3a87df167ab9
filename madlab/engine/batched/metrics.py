"""The low-dimensional metrics of :class:`madlab.metrics.lowdim.LowDimEvaluator`, for B runs at once.

Same definitions and the same arithmetic, on stacked arrays: k-NN radii and the real-fake
distance block are one batched ``torch.cdist`` (per-slice identical to the per-run call), Vendi's
B kernel matrices one stacked ``eigvalsh``, the closed-form W2 one stacked ``eigh``. Each run
keeps its own real reference set, k-NN radii and Vendi bandwidth. Large batches are scored in
slot chunks so a (chunk, n, n) distance block stays within ``BLOCK_ELEMENTS``.

Why not call the per-run functions in a loop: at n = 100 their fixed per-call cost (tensor
conversions, small LAPACK/torch calls, Python) is several times the arithmetic.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import pdist

from madlab.core.samples import Samples
from madlab.metrics.knn import CHUNK, atom_weights, ball_counts, exact_cdist, row_ids
from madlab.metrics.linalg import psd_sqrt, symmetrised
from madlab.metrics.lowdim import MAX_EXACT, w2_empirical
from madlab.metrics.memorisation import METRICS as MEMORISATION, Reference, memorisation_metrics
from madlab.metrics.vendi import entropy_exp
from madlab.plugins.dataset import Dataset

#: largest distance/kernel block (slots x n x n float64 elements) held at once: 128 MB
BLOCK_ELEMENTS = 16_000_000
PRDC = ("precision", "recall", "density", "coverage")


def _chunks(total: int, n: int):
    step = max(1, BLOCK_ELEMENTS // max(1, n * n))
    return [slice(i, min(total, i + step)) for i in range(0, total, step)]


def batched_row_ids(*stacks: torch.Tensor) -> list[torch.Tensor]:
    """:func:`madlab.metrics.knn.row_ids` of each run's sets (slot by slot): (B, n) ids per stack."""
    per_slot = [row_ids(*(stack[b].numpy() for stack in stacks)) for b in range(stacks[0].shape[0])]
    return [torch.stack([ids[i] for ids in per_slot]) for i in range(len(stacks))]


def batched_knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, n) distance of each row to its k-th nearest neighbour in its own run's set (exact duplicates at 0)."""
    if k >= x.shape[1]:
        raise ValueError(f"k={k} must be smaller than the number of samples ({x.shape[1]})")
    (ids,) = batched_row_ids(x)
    # The (k+1)-th smallest value is one number however it is selected; np.partition finds it
    # ~3x faster than torch.topk on (B, 100, 100) blocks.
    return torch.cat([torch.from_numpy(np.partition(exact_cdist(x[:, i:i + CHUNK], x, ids[:, i:i + CHUNK], ids).numpy(),
                                                    k, axis=2)[..., k])
                      for i in range(0, x.shape[1], CHUNK)], dim=1)


def batched_prdc(real: torch.Tensor, fake: torch.Tensor, k: int, real_radii: torch.Tensor) -> dict[str, np.ndarray]:
    """Precision, recall, density, coverage of B (real, fake) pairs; as :func:`madlab.metrics.knn.prdc`."""
    f_radii = batched_knn_radii(fake, k)
    real_ids, fake_ids = batched_row_ids(real, fake)
    weights = atom_weights(real_ids, real_radii, k)
    b, n_fake = fake.shape[0], fake.shape[1]
    fake_in_real_ball = torch.zeros((b, n_fake), dtype=torch.bool)
    fake_ball_count = torch.zeros((b, n_fake), dtype=torch.float64)
    real_in_fake_ball = torch.empty(real.shape[:2], dtype=torch.bool)
    real_covered = torch.empty(real.shape[:2], dtype=torch.bool)
    for i in range(0, real.shape[1], CHUNK):
        rows = slice(i, i + CHUNK)
        d = exact_cdist(real[:, rows], fake, real_ids[:, rows], fake_ids)
        fake_in_real_ball |= (d <= real_radii[:, rows, None]).any(1)
        count, real_covered[:, rows] = ball_counts(d, real_radii[:, rows], weights[:, rows])
        fake_ball_count += count
        real_in_fake_ball[:, rows] = (d <= f_radii[:, None, :]).any(2)
    return {"precision": fake_in_real_ball.double().mean(1).numpy(),
            "recall": real_in_fake_ball.double().mean(1).numpy(),
            "density": fake_ball_count.mean(1).numpy() / k,
            "coverage": real_covered.double().mean(1).numpy()}


def batched_vendi_rbf(x: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """(B,) RBF-kernel Vendi scores; as :func:`madlab.metrics.vendi.vendi_rbf` run by run."""
    sq = (x * x).sum(2)
    # vendi_rbf's expression, evaluated in place in the same order (so the same bits):
    # exp(-clip(sq_i + sq_j - 2 x x^T, 0) / (2 h^2)) / n
    kernel = sq[:, :, None] + sq[:, None, :]
    gram = x @ x.transpose(0, 2, 1)
    gram *= 2
    kernel -= gram
    np.clip(kernel, 0, None, out=kernel)
    np.negative(kernel, out=kernel)
    kernel /= (2 * bandwidth**2)[:, None, None]
    np.exp(kernel, out=kernel)
    kernel /= x.shape[1]
    eigenvalues = np.linalg.eigvalsh(kernel)
    return np.array([entropy_exp(e) for e in eigenvalues])


def batched_w2_gaussian(mean1, cov1, mean2, cov2) -> np.ndarray:
    """(B,) closed-form W2 between B Gaussians and one reference Gaussian (mean2, cov2)."""
    root2 = psd_sqrt(symmetrised(np.asarray(cov2, float)))
    product = root2 @ cov1 @ root2
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.transpose(0, 2, 1)) / 2), 0, None)).sum(1)
    value = (((mean1 - mean2) ** 2).sum(1) + np.trace(cov1, axis1=1, axis2=2) + np.trace(cov2) - 2 * cross)
    return np.sqrt(np.clip(value, 0.0, None))


class BatchedLowDimEvaluator:
    """Scores B runs' generated samples, each against its own fixed real reference set."""

    def __init__(self, dataset, metrics_cfg, real_eval: np.ndarray):
        self.dataset = dataset
        self.k = metrics_cfg.k
        self.real = np.asarray(real_eval, dtype=np.float64)
        self.true_gaussian = dataset.true_gaussian()
        self.names = set(metrics_cfg.names) if metrics_cfg.names is not None else None
        self.metadata = {"extractor": "identity", "extractor_hash": ""}
        self._extra = type(dataset).extra_metrics is not _base_extra_metrics()
        self._radii = self._bandwidth = None
        #: the memorisation metrics asked for (only when metrics.names lists them)
        self.memorisation = tuple(n for n in MEMORISATION if n in (self.names or ()))
        self._heldout: dict[int, Reference] = {}

    @property
    def real_radii(self) -> torch.Tensor:
        """Each run's real k-NN radii, computed once, and only if a k-NN metric is wanted."""
        if self._radii is None:
            real_t = torch.from_numpy(self.real)
            self._radii = torch.cat([batched_knn_radii(real_t[s], self.k)
                                     for s in _chunks(len(self.real), self.real.shape[1])])
        return self._radii

    @property
    def bandwidth(self) -> np.ndarray:
        """Each run's Vendi bandwidth (median pairwise distance of its real set), computed once."""
        if self._bandwidth is None:
            self._bandwidth = np.array([float(np.median(pdist(r[:MAX_EXACT]))) or 1.0 for r in self.real])
        return self._bandwidth

    def wanted(self, name: str) -> bool:
        return self.names is None or name in self.names

    def memorisation_scores(self, x: np.ndarray, slots: np.ndarray, train: np.ndarray | None) -> dict[str, np.ndarray]:
        """The memorisation metrics run by run, with the per-run function (so the same bits as the per-run loop):
        their cost is the k-NN search over each run's own training set, not per-call overhead."""
        rows = []
        for j, s in enumerate(slots):
            if int(s) not in self._heldout:
                self._heldout[int(s)] = Reference.of(self.real[s])
            rows.append(memorisation_metrics(x[j], None if train is None else train[j], self._heldout[int(s)],
                                             k=self.k, wanted=self.memorisation.__contains__))
        return {name: np.array([r.get(name, np.nan) for r in rows], dtype=np.float64) for name in sorted(set().union(*rows))}

    def __call__(self, fake: np.ndarray, slots: np.ndarray, sampling_gaussian=None,
                 train: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Scores of B runs' samples; ``train`` (B, N, d), the runs' training sets, for the memorisation metrics."""
        x = np.asarray(fake, dtype=np.float64)
        scores: dict[str, np.ndarray] = {}
        if self.memorisation:
            scores.update(self.memorisation_scores(x, slots, None if train is None else np.asarray(train, np.float64)))
        if any(self.wanted(m) for m in PRDC):
            parts = [batched_prdc(torch.from_numpy(self.real[slots[s]]), torch.from_numpy(x[s]), self.k,
                                  self.real_radii[slots[s]]) for s in _chunks(len(x), max(x.shape[1], self.real.shape[1]))]
            scores.update({m: np.concatenate([p[m] for p in parts]) for m in PRDC})
        if self.wanted("vendi"):
            head = x[:, :MAX_EXACT]
            scores["vendi"] = np.concatenate([batched_vendi_rbf(head[s], self.bandwidth[slots[s]])
                                              for s in _chunks(len(x), head.shape[1])])
        if self.wanted("w2"):
            if sampling_gaussian is not None and self.true_gaussian is not None:
                scores["w2"] = batched_w2_gaussian(*sampling_gaussian, *self.true_gaussian)
            else:
                scores["w2"] = np.array([w2_empirical(x[j, :MAX_EXACT], self.real[s, :MAX_EXACT])
                                         for j, s in enumerate(slots)])
        if self._extra:
            rows = [self.dataset.extra_metrics(Samples(x[j])) for j in range(len(x))]
            for name in sorted(set().union(*rows)):
                scores[name] = np.array([r.get(name, np.nan) for r in rows], dtype=np.float64)
        return scores


def _base_extra_metrics():
    return Dataset.extra_metrics
