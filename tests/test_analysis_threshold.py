"""Threshold search: coverage of its interval on the Gaussian closed form, a non-monotone criterion
reported (not bisected), and the command over ordinary madlab runs (resumable, bad input refused)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from madlab.analysis.threshold import Criterion, search_threshold
from madlab.engine.theory import expected_moments

from conftest import gaussian_spec

#: the Gaussian fresh-real loop of the tests: 2-D, n_r = n_s = 50, 12 generations, criterion on trace_cov
DIM, N_REAL, N_SYN, T, WINDOW, EPS = 2, 50, 50, 12, 5, 0.1


def exact_threshold() -> float:
    """λ* where E[(1 - ε) tr Σ_1 - mean_{t > T - w} tr Σ_t] = 0, from madlab.engine.theory's exact moment recursion
    (fresh-real Gaussian loop, fit = sample mean + unbiased covariance; E tr Σ_t increases with λ)."""
    def gap(bias):
        trace = expected_moments(T, scheme="fresh-real", n_real=N_REAL, n_synthetic=N_SYN, bias=bias,
                                 dim=DIM)["trace_cov"]
        return (1 - EPS) * trace[0] - trace[-WINDOW:].mean()
    return optimize.brentq(gap, 0.3, 1.0, xtol=1e-12)


class GaussianLoop:
    """The Gaussian fresh-real loop simulated in numpy, seeds vectorised: the same law as madlab's runs
    (real rows N(0, I); synthetic rows N(mu, λΣ); each generation fits mean and unbiased covariance of
    its pooled training set) and common random numbers across λ, as madlab's seeding gives. One instance
    per search: ``search`` offsets every seed, so repeated searches are independent."""

    def __init__(self, search: int, max_seeds: int = 64):
        rng = np.random.default_rng([2026, search])
        self.real = rng.standard_normal((max_seeds, T, N_REAL, DIM))
        self.noise = rng.standard_normal((max_seeds, T, N_SYN, DIM))
        self.criterion = Criterion("trace_cov", window=WINDOW, within=EPS)

    def traces(self, bias: float, n: int) -> np.ndarray:
        train = self.real[:n, 0]
        out = np.empty((n, T))
        for t in range(T):
            mean = train.mean(axis=1)
            cov = np.einsum("sni,snj->sij", train - mean[:, None], train - mean[:, None]) / (train.shape[1] - 1)
            out[:, t] = np.trace(cov, axis1=1, axis2=2)
            if t + 1 < T:
                chol = np.linalg.cholesky(bias * cov)
                synthetic = mean[:, None] + np.einsum("sij,snj->sni", chol, self.noise[:n, t + 1])
                train = np.concatenate([self.real[:n, t + 1], synthetic], axis=1)
        return out

    def __call__(self, bias: float, n: int) -> np.ndarray:
        return self.criterion.statistic(self.traces(bias, n))


def test_simulated_loop_matches_the_closed_form():
    # guard for the coverage test: the simulator's mean trace at λ = 0.8 over 64 seeds agrees with the exact
    # recursion within 4 standard errors (the trace's seed-to-seed sd is estimated from the same draws)
    traces = GaussianLoop(search=10_000).traces(0.8, 64)
    exact = expected_moments(T, scheme="fresh-real", n_real=N_REAL, n_synthetic=N_SYN, bias=0.8, dim=DIM)
    se = traces.std(axis=0, ddof=1) / math.sqrt(64)
    assert np.all(np.abs(traces.mean(axis=0) - exact["trace_cov"]) < 4 * se)


@pytest.mark.slow
def test_search_interval_covers_the_exact_threshold_in_at_least_95_percent_of_searches():
    truth = exact_threshold()
    searches = 120
    covered = 0
    for k in range(searches):
        result = search_threshold(GaussianLoop(k), 0.5, 1.0, tol=0.01)
        covered += result.status in ("found", "noise-limited") and result.low <= truth <= result.high
    # The search claims coverage >= 0.95. If the coverage were exactly 0.95, the count would be
    # Binomial(120, 0.95); its 0.001 quantile is the smallest count a correct search reaches in all but
    # 1 of 1000 runs of this test (the search is conservative, so it is expected to cover nearly always).
    assert covered >= stats.binom.ppf(0.001, searches, 0.95), covered


def test_one_search_brackets_the_exact_threshold_and_reports_its_probes():
    truth = exact_threshold()
    result = search_threshold(GaussianLoop(0), 0.5, 1.0, tol=0.01, setting="loop.bias")
    assert result.status in ("found", "noise-limited") and result.passes == "above"
    assert result.low <= truth <= result.high and result.low <= result.estimate <= result.high
    probes = result.probes
    assert list(probes.columns) == ["order", "phase", "value", "seeds", "criterion_mean", "bound_low", "bound_high",
                                    "decision"]
    assert (probes.phase == "scan").sum() == 5 and set(probes.decision) <= {"pass", "fail", "uncertain"}


def noisy(function, sd=0.01):
    """evaluate(x, n) = function(x) + common noise per seed (the same across x, like madlab's seeding)."""
    z = np.random.default_rng(0).standard_normal(64)
    return lambda x, n: function(x) + sd * z[:n]


def test_a_u_shaped_criterion_is_reported_not_bisected():
    result = search_threshold(noisy(lambda x: 0.04 - (x - 0.5) ** 2), 0.0, 1.0)
    assert result.status == "non-monotone" and "not one pass side" in result.violations[0]
    assert (result.probes.phase == "bisect").sum() == 0 and math.isnan(result.low)


def test_a_dip_between_consistent_decisions_is_reported():
    # passes below ~0.62, fails above; but the criterion falls from 0.25 to 0.5: monotonicity is violated
    # where the decisions alone do not show it, and the paired difference of neighbouring probes does
    def dip(x):
        return -0.6 if 0.4 < x < 0.6 else x - 0.62  # -0.37 at 0.25, -0.6 at 0.5
    result = search_threshold(noisy(dip), 0.0, 1.0)
    assert result.status == "non-monotone" and any("falls from 0.25 to 0.5" in v for v in result.violations)


def test_no_flip_in_range_is_said():
    result = search_threshold(noisy(lambda x: -1.0 - x), 0.0, 1.0)
    assert result.status.startswith("no flip in range: the criterion passes")


def test_integer_settings_are_probed_at_integers():
    result = search_threshold(noisy(lambda x: x - 37.4), 10, 100, integer=True)
    assert set(result.probes.value) == set(result.probes.value.round())
    assert (result.low, result.high) == (37, 38)


@pytest.mark.fp_exact
def test_threshold_command_runs_probes_as_ordinary_runs_and_resumes(cli, write_spec, tmp_path):
    spec = gaussian_spec(scheme="fresh-real", generations=6, n_real=200, n_synthetic=200)
    spec["metrics"] = {"names": ["trace_cov"]}
    path, out = write_spec(spec), tmp_path / "search"
    args = ["threshold", path, "--setting", "loop.bias", "--range", "0.1", "1.0", "--metric", "trace_cov",
            "--within", "30%", "--window", "3", "--seeds", "8", "--max-seeds", "16", "--scan", "3", "--tol", "0.3",
            "--out", out, "--no-ray"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    answer = json.loads((out / "threshold.json").read_text())
    trace = lambda bias: expected_moments(6, scheme="fresh-real", n_real=200, n_synthetic=200, bias=bias,  # noqa: E731
                                          dim=2)["trace_cov"]
    truth = optimize.brentq(lambda bias: 0.7 * trace(bias)[0] - trace(bias)[-3:].mean(), 0.1, 1.0)
    assert answer["setting"] == "loop.bias" and "Bonferroni" in answer["method"]
    assert (out / "threshold.png").stat().st_size > 0 and (out / "threshold.pdf").is_file()
    assert answer["low"] <= truth <= answer["high"]  # a >= 95 % interval: this fixed draw covers it
    probes = pd.read_parquet(out / "probes.parquet")
    folders = sorted(p.name for p in (out / "probes").iterdir())
    assert len(folders) == len(probes) and all(f.startswith("loop.bias=") for f in folders)
    assert all((out / "probes" / f / "metrics.parquet").is_file() for f in folders)

    def published():  # every generation's record: gen-XXXX folders, or batch records for >= 16 like runs
        # (config.json and the table are rewritten by every `madlab run`, with the same content)
        return {str(p): p.stat().st_mtime_ns for f in folders for part in ("runs", "batches")
                for p in (out / "probes" / f / part).rglob("*") if p.is_file() and p.name != "config.json"}
    before = published()
    assert cli(*args)[0] == 0  # a second search replays from the published runs: nothing is re-run
    # exact: the replay computes the same statistics from the same published values by the same code path
    assert json.loads((out / "threshold.json").read_text()) == answer and published() == before


@pytest.mark.parametrize("extra, needle", [
    (["--within", "10%", "--level", "1"], "exactly one"),
    (["--within", "abc"], "--within"),
    (["--within", "10%", "--set", "sweep.loop.scheme=[fresh-real, fixed-real]"], "one arm"),
    (["--within", "10%", "--setting", "seed"], "seed"),
])
def test_threshold_bad_input_exits_2_before_anything_is_written(cli, write_spec, tmp_path, extra, needle):
    out = tmp_path / "search"
    args = ["threshold", write_spec(gaussian_spec()), "--setting", "loop.bias", "--range", "0.5", "1.0",
            "--metric", "trace_cov", "--out", out, "--no-ray", *extra]
    code, _, err = cli(*args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_fig12_boundary_search_agrees_with_a_direct_monte_carlo_at_its_ends():
    from madlab.analysis.ess_boundary import ess_boundary
    from madlab.engine.theory import fresh_real_limit_error, plain_error_curve

    result = ess_boundary(1000, 2154, lo=0.9, hi=1.0, tol=0.01)
    assert result.status in ("found", "noise-limited") and result.passes == "above"
    # Independent chains (another seed), 1000 at each end. Each end was decided by a one-sided t bound at
    # level ~1e-3 on <= 64 chains, so (if the decision was right) its true mean criterion is >= ~3 of those
    # standard errors (sd / 8) from 0: >= ~12 standard errors (sd / 31.6) of the 1000-chain check, whose
    # other error, the plain fit's Monte Carlo on 100,000 fits, is 10x smaller still.
    plain = plain_error_curve(10, [1000], reps=100_000, seed=99)[0]
    ends = fresh_real_limit_error([1000, 1000], [2154, 2154], [result.low, result.high], dim=10, reps=1000,
                                  seed=123)["error"]
    assert ends[0] > plain > ends[1]
