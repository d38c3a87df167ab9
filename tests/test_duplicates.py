"""Density, coverage, precision, recall, Vendi and FID when fake samples are exact copies of real samples
or of each other (issue 24 item 2; prdc issue #7): identical sets, a single repeated point, half copies.

The rule for ties (madlab.metrics.knn.ball_counts): Naeem et al.'s open balls for distinct points, and for
a real ball of radius 0 (a row with >= k exact copies) the limit of an infinitesimal jitter: a fake equal
to the row counts k / copies. ``brute`` writes that rule out pair by pair on scipy's direct distances.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from fp import U64, gamma
from madlab.engine.batched.metrics import batched_knn_radii, batched_prdc
from madlab.metrics.feature import feature_metrics
from madlab.metrics.knn import prdc
from madlab.metrics.vendi import vendi_cosine, vendi_rbf

K = 5


def brute(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    drr, dff, drf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r, rf = np.sort(drr, 1)[:, k], np.sort(dff, 1)[:, k]  # column 0 is the row itself
    copies = (drr == 0).sum(1)
    inside = np.where(r[:, None] > 0, drf < r[:, None], (drf == 0) * (k / copies[:, None]))
    nearest = drf.min(1)
    return {"precision": float((drf <= r[:, None]).any(0).mean()), "recall": float((drf <= rf[None, :]).any(1).mean()),
            "density": float(inside.sum(0).mean() / k),
            "coverage": float(np.where(r > 0, nearest < r, nearest == 0).mean())}


def points(n=120, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def check(real, fake, expected=None):
    """prdc (per run) and batched_prdc (a stack of one) against brute force; the density is a sum of n_real
    weights k / copies per fake, so its rounding is at most gamma(n_real) relative; the counts are whole."""
    ours = prdc(real, fake, K)
    stacked = batched_prdc(torch.from_numpy(real[None]), torch.from_numpy(fake[None]), K,
                           batched_knn_radii(torch.from_numpy(real[None]), K))
    ref = brute(real, fake) if expected is None else expected
    tol = gamma(len(real), U64)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, rel=tol, abs=tol), name
        assert stacked[name][0] == pytest.approx(value, rel=tol, abs=tol), name
    return ours


def test_identical_sets_score_one():
    real = points()
    check(real, real.copy(), {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})


def test_identical_sets_of_one_repeated_point_score_one():
    """prdc issue #7: two sets of one repeated point scored density = coverage = 0 under the strict <."""
    atom = np.repeat(points(1), 50, axis=0)
    check(atom, np.repeat(atom[:1], 70, axis=0), {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})
    ones = np.ones((64, 16), dtype=np.float32)  # the issue's own example (float32 features)
    out = prdc(ones, ones.copy(), K)
    assert out == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}, abs=gamma(64, U64))


def test_a_single_repeated_fake_point_against_real_data():
    real = points()
    fake = np.repeat(real[:1], 60, axis=0)
    out = check(real, fake)
    # recall: the fake k-NN balls have radius 0, so only the copied real row lies in one
    assert out["precision"] == 1.0 and out["recall"] == 1 / len(real)
    assert out["coverage"] < 0.2


def test_half_copies_agree_with_the_prdc_package():
    """Without radius-0 balls the tie rule never applies: the values are Naeem et al.'s, and their package
    (which compares with the same strict < on distances that agree to rounding, and no distance sits within
    rounding of a radius in these draws) gives the same numbers."""
    from prdc import compute_prdc

    real = points(200, 4, seed=1)
    fake = np.concatenate([real[:100], points(100, 4, seed=2)])
    ours = check(real, fake)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = compute_prdc(real, fake, nearest_k=K)
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(ref[name]), abs=1e-12), name


def test_fakes_that_copy_each_other():
    real = points(150, 2, seed=3)
    fake = np.repeat(points(15, 2, seed=4), 10, axis=0)  # 15 points, 10 copies each
    out = check(real, fake)
    assert out["recall"] == 0.0  # every fake ball has radius 0 and no real row equals a fake
    # a real set holding duplicates, scored against its own rows: copies of radius-0 rows count k / copies
    dup_real = np.concatenate([real, np.repeat(real[:1], 8, axis=0)])
    check(dup_real, real.copy())
    out = check(dup_real, dup_real.copy())
    # exact: whole counts (every row has a distance-0 copy among the fakes). The density is not 1 here: a
    # distinct row whose k-NN ball reaches the 9-copy atom holds all 9 copies, more than k points
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0


def test_vendi_counts_a_repeated_set_once_and_one_point_as_one():
    """K/n of a set repeated m times has the spectrum of the set's own K/n (each eigenvalue of the (mn x mn)
    kernel is the set's, the others 0), so Vendi is unchanged; one repeated point has K/n = 11^T/n, one
    eigenvalue 1: Vendi = 1. The two kernels are different matrices (eigvalsh of n vs m n rows): rounding
    bound gamma(m n) relative on each eigenvalue, carried through exp(entropy) by at most a factor of n."""
    x = points(40, 3, seed=5)
    repeated = np.tile(x, (3, 1))
    tol = len(x) * gamma(3 * len(x) * 3, U64) * 100
    assert vendi_cosine(repeated) == pytest.approx(vendi_cosine(x), rel=tol)
    assert vendi_rbf(repeated, 1.0) == pytest.approx(vendi_rbf(x, 1.0), rel=tol)
    atom = np.repeat(x[:1], 30, axis=0)
    assert vendi_cosine(atom) == pytest.approx(1.0, rel=tol) and vendi_rbf(atom, 1.0) == pytest.approx(1.0, rel=tol)


def test_fid_of_copies():
    """Identical sets: 0. One repeated point: its covariance is 0, so FID = |mu_r - x|^2 + tr S_r. A set repeated
    m times: the same mean, and the unbiased covariance scaled by (n - 1) m / (m n - 1) (np.cov's 1/(N - 1))."""
    real = points(300, 6, seed=6).astype(np.float32)
    tol = 1e-4  # float32 features: torch-fidelity's statistics in float64 from float32 inputs; FID is O(10)
    assert abs(feature_metrics(real, real.copy(), names=["fid"])["fid"]) < tol
    x = real[:1]
    expected = float(((real.astype(np.float64).mean(0) - x[0]) ** 2).sum() + np.trace(np.cov(real.T.astype(np.float64))))
    assert feature_metrics(real, np.repeat(x, 50, axis=0), names=["fid"])["fid"] == pytest.approx(expected, rel=tol)
