"""Paired comparisons: nominal coverage of the paired interval, the sign-flip test's exact values,
verdicts, and `madlab compare` on a results folder."""
import math

import numpy as np
import pandas as pd
import pytest

from madlab.analysis import NOT_SEPARATED, compare, paired_interval
from madlab.analysis.intervals import sign_flip_p

from conftest import gaussian_spec


def binomial_band(reps: int, p: float, sds: float = 4.0) -> tuple[float, float]:
    """Coverage count band: X ~ Binomial(reps, p) if the interval has coverage p exactly. The normal
    approximation's +- 4 sd holds X with probability 1 - 6e-5 (reps p (1 - p) >= 100 here), so a
    correct interval fails this test about once in 16,000 runs; a coverage off by 0.02 at reps = 4000
    (sd 0.0034 in the rate) is outside it."""
    sd = math.sqrt(reps * p * (1 - p))
    return reps * p - sds * sd, reps * p + sds * sd


@pytest.mark.parametrize("seeds", [5, 12])
def test_paired_interval_covers_the_true_difference_at_the_nominal_rate(seeds):
    # arms share a seed effect (common random numbers): a_i = 1 + 0.4 + s_i + e_i, b_i = 1 + s_i + e'_i,
    # s_i ~ N(0, 2) large, e ~ N(0, 0.3): the per-seed difference removes s_i. True difference 0.4.
    rng = np.random.default_rng(2026)
    reps, covered = 4000, 0
    for _ in range(reps):
        shared = rng.normal(0, 2, seeds)
        a = 1.4 + shared + rng.normal(0, 0.3, seeds)
        b = 1.0 + shared + rng.normal(0, 0.3, seeds)
        result = paired_interval(a - b)
        covered += result["ci_low"] <= 0.4 <= result["ci_high"]
    low, high = binomial_band(reps, 0.95)
    assert low <= covered <= high, covered


@pytest.mark.fp_exact
def test_sign_flip_p_is_exact():
    # p-values are counts of sign patterns / 2^n: exact in binary floating point, so compared exactly
    # all 3 differences positive: of the 2^3 sign patterns, |mean| is as large only for all + and all -
    assert sign_flip_p([1.0, 2.0, 3.0]) == (2 / 8, 2 / 8)
    # 5 seeds cannot reach 0.05: the floor is 2 / 32
    assert sign_flip_p([0.5, 1.0, 1.5, 2.0, 2.5]) == (0.0625, 0.0625)
    # observed mean exactly 0: every pattern's |mean| is >= 0, so p = 1
    assert sign_flip_p([1.0, -1.0, 2.0, -2.0])[0] == 1.0


def test_sign_flip_p_is_a_valid_test_under_the_null():
    # H0 true (symmetric differences): P(p <= 0.05) <= 0.05. With 8 seeds the attainable p-values are
    # multiples of 1/128, so the rejection rate is at most 0.05; counted over 3000 draws with the band above.
    rng = np.random.default_rng(11)
    reps = 3000
    rejected = sum(sign_flip_p(rng.normal(0, 1, 8))[0] <= 0.05 for _ in range(reps))
    assert rejected <= binomial_band(reps, 0.05)[1]


def curves(scheme, effect, seeds=5, generations=10, rng=None, bias=0.8):
    rng = rng or np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        seed_effect = np.random.default_rng(100 + s).normal(0, 1.0)  # the same for both arms: shared seeds
        for g in range(1, generations + 1):
            rows.append({"run_id": f"{scheme}-{bias}-{s}", "seed": s, "scheme": scheme, "bias": bias,
                         "generation": g, "metric": "modes",
                         "value": 25 + effect * (g - 1) + seed_effect + rng.normal(0, 0.3)})
    return rows


@pytest.mark.fp_exact
def test_compare_finds_a_real_difference_and_says_which_arm_is_better():
    rng = np.random.default_rng(5)
    data = pd.DataFrame(curves("accumulate", 0.0, rng=rng) + curves("fully-synthetic", -0.5, rng=rng))
    result = compare(data, by="scheme", a="accumulate", b="fully-synthetic", metrics=["modes"], generations=[10])
    at10 = result[result.quantity == "value@10"].iloc[0]
    # the truth is +4.5 modes at generation 10 (0 - (-0.5) x 9); the per-seed noise of a difference is
    # sqrt(2) x 0.3 = 0.42, so the 95 % t interval (5 seeds: +- 2.78 x 0.42 / sqrt(5) = +-0.53) excludes 0 by far
    assert at10.verdict == "a higher" and at10.better == "accumulate"
    assert at10.ci_low < 4.5 < at10.ci_high and at10.seeds == 5
    assert at10.sign_flip_p == 0.0625 and at10.min_p == 0.0625  # counts / 2^5: exact
    rate = result[result.quantity == "rate"].iloc[0]
    assert rate.ci_low < 0.5 < rate.ci_high and rate.better == "accumulate"


def test_compare_says_not_separated_when_the_interval_covers_zero():
    rng = np.random.default_rng(9)
    data = pd.DataFrame(curves("accumulate", 0.0, rng=rng) + curves("fully-synthetic", 0.0, rng=rng))
    result = compare(data, by="scheme", metrics=["modes"])
    for r in result.itertuples():
        assert (r.verdict == NOT_SEPARATED) == (r.ci_low <= 0 <= r.ci_high)


def test_compare_pairs_only_within_cells_of_the_other_axes():
    rng = np.random.default_rng(1)
    rows = []
    for bias in (1.0, 0.8):
        rows += curves("accumulate", 0.0, rng=rng, bias=bias) + curves("fully-synthetic", -0.2, rng=rng, bias=bias)
    result = compare(pd.DataFrame(rows), by="scheme", metrics=["modes"])
    assert sorted(result.bias.unique()) == [0.8, 1.0]
    only = compare(pd.DataFrame(rows), by="scheme", where={"bias": "0.8"}, metrics=["modes"])
    assert len(only) == len(result) / 2


def test_compare_command_answers_the_accumulate_question(cli, write_spec, tmp_path):
    spec = gaussian_spec(generations=5)
    spec["sweep"] = {"loop.scheme": ["fully-synthetic", "fresh-real"], "loop.bias": [1.0, 0.8], "seed": [0, 1, 2]}
    out = tmp_path / "out"
    assert cli("run", write_spec(spec), "--out", out, "--no-ray")[0] == 0
    code, stdout, err = cli("compare", out, "--by", "scheme", "--a", "fresh-real", "--b", "fully-synthetic",
                            "--where", "bias=0.8", "--metric", "trace_cov", "--at", "5", "--csv", tmp_path / "c.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table.quantity) == {"value@5", "rate ratio", "stationary"} and set(table.seeds) == {3}
    assert "t interval" in stdout and "sign-flip" in stdout
    code, stdout, _ = cli("compare", out, "--by", "scheme", "--where", "bias=0.8", "--metric", "trace_cov",
                          "--quantity", "rate", "--csv", tmp_path / "r.csv")
    assert code == 0 and list(pd.read_csv(tmp_path / "r.csv").quantity) == ["rate ratio"]
    code, _, err = cli("compare", out, "--by", "scheme", "--a", "accumulate", "--b", "fresh-real")
    assert code == 2 and "accumulate" in err and len(err.strip().splitlines()) == 1
