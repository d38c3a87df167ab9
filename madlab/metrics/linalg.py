"""Small dense linear algebra the metrics share (FID, the Gaussian W2, their batched twins)."""
from __future__ import annotations

import numpy as np


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The square root of a symmetric PSD matrix from its eigendecomposition (negative eigenvalues,
    rounding noise, clipped to 0). ``eigh`` reads the lower triangle only."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def symmetrised(matrix: np.ndarray) -> np.ndarray:
    """``(M + M^T) / 2``: both triangles agree (a covariance summed in another order may not)."""
    return (matrix + matrix.T) / 2
