"""Floating-point tolerances for tests that compare two *different* computation paths.

madlab's reproducibility contract (README, docs/design.md "Reproducibility"):

* the same computation on the same machine, with the same library versions, gives the same bits: those
  tests assert exact equality and say why both sides run the same operations;
* a different order of the same arithmetic (the batched engine vs the per-run loop, another batch
  composition, another thread count, another CPU's BLAS kernel) agrees only to rounding. Those tests use
  the bounds below, derived here once, never tuned until a test passes.

Standard results used (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002):

* a sum (or dot product) of ``m`` terms evaluated in *any* order has
  ``|fl(s) - s| <= gamma(m) * sum |terms|``, ``gamma(m) = m u / (1 - m u)`` (Lemma 3.1, eq. 3.5);
  two orders therefore differ by at most ``2 gamma(m) sum |terms|``;
* matrix products, Cholesky and the symmetric eigensolver are backward stable with constants of the same
  form (Theorems 3.5, 10.3; Golub & Van Loan 8.4), so their outputs move by ``condition * gamma(m)``.
"""
from __future__ import annotations

U64 = 2.0 ** -53  #: unit roundoff of IEEE float64
U32 = 2.0 ** -24  #: unit roundoff of IEEE float32


def gamma(m: int, u: float = U64) -> float:
    """Higham's gamma_m = m u / (1 - m u): the relative error bound of an m-term sum in any order."""
    assert m * u < 1
    return m * u / (1 - m * u)


def loop_rtol(generations: int, terms: int, condition: float = 100.0, growth: float = 2.0) -> float:
    """Relative bound between two float64 evaluations of one self-consuming loop that differ only in order.

    Generation 1: every number the loop reports (fitted mean and covariance, their Cholesky factor, the
    samples ``mu + L z``, W2's matrix square roots, k-NN distances, Vendi's eigenvalues) is a backward-stable
    function of reductions of at most ``terms`` products (``terms`` = n_samples x dim bounds the longest: a
    covariance entry or a squared distance summed over a batch), so the two orders differ relatively by at
    most ``2 * condition * gamma(terms)``; ``condition`` bounds the condition number of the fitted covariance
    (a Gaussian fit with n >= 3 d: Marchenko-Pastur gives ((1 + sqrt(d/n)) / (1 - sqrt(d/n)))^2 <= 14; 100
    leaves room for the eigensolver's own constant).
    Generation t + 1 fits on generation t's samples, which carry that error: the Gaussian fit is at most
    quadratic in its data, so an error grows at most ``growth`` = 2-fold a generation, and the errors add:
    ``err_T <= 2 * condition * gamma(terms) * sum_{t < T} growth**t``.

    The k-NN *counts* (precision, recall, coverage, modes) are step functions of distances: they can only
    differ if a distance lies within this bound of a k-NN radius. For n <= 10^3 points the chance that any of
    the n^2 gaps is below ~1e-10 of its scale is ~n^2 * 1e-10 <= 1e-4 per comparison, so the bound is used for
    them too (a counting difference would show as a 1/n jump, far outside it, and fail loudly).
    """
    return 2 * condition * gamma(terms) * sum(growth ** t for t in range(generations))


def float32_rtol(terms: int, condition: float = 10.0) -> float:
    """The same bound for one float32 network evaluation (``terms`` = the longest dot product in it)."""
    return 2 * condition * gamma(terms, U32)


def mp_condition(n: int, d: int) -> float:
    """Condition number of a sample covariance of n >= d points in d dimensions (Marchenko-Pastur edges,
    ((1 + sqrt(d/n)) / (1 - sqrt(d/n)))^2), floored at 1: the ``condition`` of a Gaussian loop's fit."""
    r = (d / n) ** 0.5
    assert r < 1, "n must exceed d"
    return max(1.0, ((1 + r) / (1 - r)) ** 2)


def assert_close(mine, theirs, rtol: float, atol: float, where: str = "") -> None:
    """Recursive comparison of records (dicts, lists, numbers, strings): numbers within
    ``|a - b| <= atol + rtol * |b|``, everything else equal."""
    if isinstance(theirs, dict):
        assert isinstance(mine, dict) and mine.keys() == theirs.keys(), where
        for key in theirs:
            assert_close(mine[key], theirs[key], rtol, atol, f"{where}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs)):
            assert_close(a, b, rtol, atol, f"{where}[{i}]")
    elif isinstance(theirs, float) and not isinstance(theirs, bool):
        assert abs(mine - theirs) <= atol + rtol * abs(theirs), f"{where}: {mine!r} vs {theirs!r}"
    else:
        assert mine == theirs, f"{where}: {mine!r} vs {theirs!r}"
