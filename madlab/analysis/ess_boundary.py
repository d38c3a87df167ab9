"""MAD Fig. 12's boundary as a threshold search: the λ below which synthetic data lower the
effective sample size of the Gaussian fresh-real loop (n_e < n_r).

n_e >= n_r exactly when the loop's limit error is at most the one-shot fit's on n_r real samples:
lim_t E[W2(G_t, P)] <= E[W2(G_{n_r}, P)] (MAD Eqs. 3-4; :mod:`madlab.engine.theory`). The criterion's
per-seed statistic is one Monte-Carlo chain's limit error (W2 averaged after its burn-in,
:func:`madlab.engine.theory.fresh_real_limit_error`) minus the plain estimator's expected error on n_r
samples (:func:`madlab.engine.theory.plain_error_curve`, with many more repetitions: its Monte-Carlo error
is ignored, and stated). Chains are independent across probes (no common random numbers here:
the paired monotonicity check then compares independent draws, which is valid, only less sensitive).
The probes are Monte-Carlo chains of the theory, not madlab runs: at λ < 1 madlab's recorded
``w2`` scores the λ-scaled sampling distribution, while n_e is defined on the fitted model.
"""
from __future__ import annotations

import numpy as np

from madlab.analysis.threshold import Threshold, search_threshold
from madlab.engine.theory import fresh_real_limit_error, plain_error_curve


def ess_criterion(n_real: int, n_synthetic: int, *, dim: int = 10, seed: int = 0, plain_reps: int = 100_000,
                  burn_in: float = 2.0, window: float = 4.0):
    """evaluate(λ, n) -> n chains' limit error minus the plain fit's expected error on n_real samples."""
    plain = float(plain_error_curve(dim, [n_real], reps=plain_reps, seed=seed + 1)[0])

    def evaluate(bias: float, n: int) -> np.ndarray:
        result = fresh_real_limit_error([n_real], [n_synthetic], [bias], dim=dim, reps=n, burn_in=burn_in,
                                        window=window, seed=[seed, n_synthetic, round(bias * 1e6), n])
        return result["per_chain"][0] - plain

    return evaluate


def ess_boundary(n_real: int, n_synthetic: int, *, lo: float = 0.5, hi: float = 1.0, dim: int = 10, seed: int = 0,
                 **search) -> Threshold:
    """The λ* where n_e = n_r for one (n_r, n_s): passes (n_e >= n_r) above it."""
    return search_threshold(ess_criterion(n_real, n_synthetic, dim=dim, seed=seed), lo, hi, setting="bias",
                            criterion=f"n_e >= n_r: limit W2 of the fresh-real loop (n_r = {n_real}, n_s = "
                                      f"{n_synthetic}, d = {dim}) <= the one-shot fit's on n_r samples", **search)
