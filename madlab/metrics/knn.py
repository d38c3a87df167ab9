"""k-NN manifold metrics from one shared distance computation.

Precision/recall: Kynkäänniemi et al. 2019 (k-NN balls around each set's samples, a point on a
ball's boundary counts as inside, as in their code and torch-fidelity's); density/coverage:
Naeem et al. 2020 (strict inequality, as in their ``prdc`` package). All four come from the same
three distance blocks (real-real, fake-fake, real-fake): the real-fake block is computed once,
in row chunks with torch.cdist so that 10k x 10k feature sets never hold a full matrix, and the
real-real block is skipped altogether when the caller passes the real radii it kept from an
earlier generation.
"""
from __future__ import annotations

import numpy as np
import torch

#: rows of a distance block computed at once (the real-fake block never exists whole)
CHUNK = 2048


def row_ids(*sets) -> list[torch.Tensor]:
    """One integer per row of each set, equal exactly when two rows (of any of the sets) are equal.

    ``torch.cdist`` computes large blocks as |a|^2 + |b|^2 - 2 a.b, so the distance between two equal
    rows comes out as rounding noise (0.35 for float32 features of norm ~450), not 0. Exact copies are
    what memorisation metrics and duplicate-safe k-NN counts must see, so :func:`exact_cdist` sets the
    distance of every pair of equal rows to 0 by these ids (``+ 0.0`` folds -0.0 into 0.0).
    """
    arrays = [np.ascontiguousarray(np.asarray(s) + 0.0) for s in sets]
    stacked = np.concatenate([a.reshape(len(a), -1) for a in arrays])
    keys = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * stacked.shape[1]))).ravel()
    ids = np.unique(keys, return_inverse=True)[1].ravel()
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return [torch.from_numpy(ids[bounds[i]:bounds[i + 1]].astype(np.int64)) for i in range(len(arrays))]


def exact_cdist(a: torch.Tensor, b: torch.Tensor, a_ids: torch.Tensor, b_ids: torch.Tensor) -> torch.Tensor:
    """``torch.cdist(a, b)`` with the distance between equal rows exactly 0 (see :func:`row_ids`)."""
    d = torch.cdist(a, b)
    return d.masked_fill_(a_ids[..., :, None] == b_ids[..., None, :], 0.0)


def _as_tensor(x) -> torch.Tensor:
    """float64 stays float64 (low-dimensional data, where float32 distances would cancel badly);
    everything else becomes float32, as torch-fidelity computes image-feature distances."""
    x = torch.as_tensor(np.asarray(x))
    return x if x.dtype == torch.float64 else x.float()


def knn_radii(x, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest neighbour in the same set (itself excluded)."""
    x = _as_tensor(x)
    if k >= len(x):
        raise ValueError(f"k={k} must be smaller than the number of samples ({len(x)})")
    # topk is ~10x faster than kthvalue on CPU for small k.
    radii = [torch.topk(torch.cdist(x[i:i + CHUNK], x), k + 1, dim=1, largest=False).values[:, k]
             for i in range(0, len(x), CHUNK)]
    return torch.cat(radii).double().numpy()


def prdc(real, fake, k: int = 5, real_radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (rows = samples).

    ``real_radii`` (from :func:`knn_radii`) may be passed in when the real set is reused
    across generations, saving the real-real distance block.
    """
    real_t, fake_t = _as_tensor(real), _as_tensor(fake)
    if real_t.dtype != fake_t.dtype:
        real_t, fake_t = real_t.double(), fake_t.double()
    if real_radii is None:
        real_radii = knn_radii(real_t, k)
    r_radii = torch.as_tensor(np.asarray(real_radii)).to(real_t.dtype)
    f_radii = torch.as_tensor(knn_radii(fake_t, k)).to(real_t.dtype)
    fake_in_real_ball = torch.zeros(len(fake_t), dtype=torch.bool)
    fake_ball_count = torch.zeros(len(fake_t), dtype=torch.float64)
    real_in_fake_ball = torch.empty(len(real_t), dtype=torch.bool)
    real_covered = torch.empty(len(real_t), dtype=torch.bool)
    for i in range(0, len(real_t), CHUNK):
        d = torch.cdist(real_t[i:i + CHUNK], fake_t)  # (chunk of real, n_fake)
        r = r_radii[i:i + CHUNK, None]
        fake_in_real_ball |= (d <= r).any(0)
        fake_ball_count += (d < r).sum(0)
        real_in_fake_ball[i:i + CHUNK] = (d <= f_radii[None, :]).any(1)
        real_covered[i:i + CHUNK] = d.min(1).values < r[:, 0]
    return {"precision": fake_in_real_ball.double().mean().item(),
            "recall": real_in_fake_ball.double().mean().item(),
            "density": fake_ball_count.mean().item() / k,
            "coverage": real_covered.double().mean().item()}
