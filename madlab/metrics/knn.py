"""k-NN manifold metrics from one shared distance computation.

Precision/recall: Kynkäänniemi et al. 2019 (k-NN balls around each set's samples);
density/coverage: Naeem et al. 2020. All four come from the same three distance blocks
(real-real, fake-fake, real-fake), computed once in row chunks with torch.cdist so that 10k x 10k
feature sets fit in memory.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _chunked_cdist(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    return torch.cat([torch.cdist(a[i:i + chunk], b) for i in range(0, len(a), chunk)])


def knn_radii(x, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest neighbour in the same set (itself excluded)."""
    x = _as_tensor(x)
    if k >= len(x):
        raise ValueError(f"k={k} must be smaller than the number of samples ({len(x)})")
    radii = [torch.cdist(x[i:i + 2048], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), 2048)]
    return torch.cat(radii).numpy()


def prdc(real, fake, k: int = 5, real_radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (rows = samples).

    ``real_radii`` (from :func:`knn_radii`) may be passed in when the real set is reused
    across generations, saving the real-real distance block.
    """
    real_t, fake_t = _as_tensor(real), _as_tensor(fake)
    if real_radii is None:
        real_radii = knn_radii(real_t, k)
    fake_radii = knn_radii(fake_t, k)
    r_radii, f_radii = torch.as_tensor(real_radii), torch.as_tensor(fake_radii)
    d_rf = _chunked_cdist(real_t, fake_t)  # (n_real, n_fake)
    inside_real = d_rf < r_radii[:, None]  # fake j inside real i's ball
    precision = inside_real.any(0).double().mean().item()
    density = inside_real.sum(0).double().mean().item() / k
    recall = (d_rf < f_radii[None, :]).any(1).double().mean().item()
    coverage = (d_rf.min(1).values < r_radii).double().mean().item()
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}
