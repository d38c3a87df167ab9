"""Vendi score (Friedman & Dieng 2023): exp of the entropy of the similarity kernel's spectrum."""
from __future__ import annotations

import numpy as np


def entropy_exp(eigenvalues: np.ndarray) -> float:
    """exp of the entropy of a spectrum normalised to sum 1 (eigenvalues below 1e-12 dropped): the Vendi score."""
    p = np.clip(eigenvalues, 0, None)
    p = p[p > 1e-12]
    p = p / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def vendi_cosine(features) -> float:
    """Cosine-kernel Vendi in the d x d dual form: K/n = X X^T / n shares its non-zero
    eigenvalues with X^T X / n, so the cost is O(n d^2) instead of O(n^2 d)."""
    x = np.asarray(features, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return entropy_exp(np.linalg.eigvalsh(x.T @ x / len(x)))


def vendi_rbf(samples, bandwidth: float) -> float:
    """RBF-kernel Vendi (exact, n x n) for low-dimensional data, where the cosine kernel only
    sees angles and is capped at d. ``bandwidth`` must be fixed per run (from the real set)
    so that values are comparable across generations."""
    x = np.asarray(samples, dtype=np.float64)
    sq = (x * x).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0, None)
    k = np.exp(-d2 / (2 * bandwidth**2))
    return entropy_exp(np.linalg.eigvalsh(k / len(x)))
