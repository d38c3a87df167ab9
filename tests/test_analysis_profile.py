"""Collapse profile: rate, crossing, stationary level and flattening on curves with known parameters,
and the profile / metrics commands on a real results folder."""
import math

import numpy as np
import pandas as pd
import pytest

from madlab.analysis import METRIC_INFO, collapse_profile
from madlab.analysis.curves import arm_curves
from madlab.analysis.metric_info import COLLAPSE_DEFINITIONS
from madlab.analysis.profile import crossing_generation

from conftest import gaussian_spec
from fp import gamma

# Our estimate vs the closed form of the same exact quantity (noise-free curves): every sum has <= 20 terms,
# so it is within gamma(20) of exact relative to its sum of |terms| (Higham eq. 3.5, tests/fp.py); centring
# and the level differences cancel at most a factor 10 here (values <= 2, differences >= 0.05 x the level),
# and a quotient, a log or an exp adds one rounding each: relative error <= 3 x 10 x gamma(20) ~ 7e-14.
EXACT = 30 * gamma(20)
# Our OLS slope vs numpy.polyfit's least squares (another algorithm: QR/SVD) on the same noisy rows: the
# least-squares forward error is <= (cond(A)^2 + cond(A)) gamma(m) relative (Golub & Van Loan 5.3.8), with
# cond([g, 1]) ~ 16 for g = 1..12 and m = 24 rows x columns: <= 300 gamma(24) ~ 8e-13 per seed and in the mean.
LSTSQ = 300 * gamma(24)


def frame(curve, seeds=6, noise=0.0, metric="w2", arm="a", rng=None, multiplicative=False):
    """Tidy rows of ``seeds`` runs of one arm: curve(g) plus Gaussian noise (or log-normal factor)."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        for g in range(1, len(curve) + 1):
            e = rng.normal(0, noise)
            value = curve[g - 1] * math.exp(e) if multiplicative else curve[g - 1] + e
            rows.append({"run_id": f"{arm}{s}", "seed": s, "scheme": arm, "generation": g, "metric": metric,
                         "value": value})
    return pd.DataFrame(rows)


def row(profile, quantity, metric="w2"):
    return profile[(profile.quantity == quantity) & (profile.metric == metric)].iloc[0]


def test_every_metric_row_is_complete():
    for name, info in METRIC_INFO.items():
        assert info.worse in ("higher", "lower"), name
        assert set(info.collapse) <= set(COLLAPSE_DEFINITIONS), name
        assert info.range[0] < info.range[1] and info.definition, name


def test_docs_metrics_table_is_generated_from_the_metric_table():
    from pathlib import Path

    from madlab.analysis.metric_info import metrics_markdown

    docs = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
    assert docs.read_text() == metrics_markdown(), "regenerate: madlab metrics --markdown > docs/metrics.md"


@pytest.mark.fp_exact
def test_linear_curve_slope_and_crossing_are_exact():
    # w2 = 0.1 + 0.05 g, no noise: slope 0.05, level 0.4 crossed at g = (0.4 - 0.1) / 0.05 = 6
    g = np.arange(1, 11)
    profile = collapse_profile(frame(0.1 + 0.05 * g), levels={"w2": 0.4})
    assert row(profile, "rate").estimate == pytest.approx(0.05, rel=EXACT)
    assert row(profile, "crossing").estimate == pytest.approx(6.0, rel=EXACT)
    assert row(profile, "start").estimate == pytest.approx(0.15, rel=EXACT)
    assert row(profile, "end").estimate == pytest.approx(0.6, rel=EXACT)
    assert row(profile, "stationary").status == "still worsening" or math.isnan(row(profile, "drift").ci_low)


@pytest.mark.fp_exact
def test_noisy_slope_equals_a_direct_fit_and_its_interval_covers_the_truth():
    g = np.arange(1, 13)
    data = frame(1.0 + 0.2 * g, seeds=8, noise=0.3, rng=np.random.default_rng(7))
    profile = collapse_profile(data)
    # direct fit: numpy's polyfit per seed, averaged: another algorithm for the same OLS estimate (LSTSQ above)
    direct = np.mean([np.polyfit(g, run.sort_values("generation").value, 1)[0] for _, run in data.groupby("seed")])
    rate = row(profile, "rate")
    assert rate.estimate == pytest.approx(direct, rel=LSTSQ)
    assert rate.ci_low < 0.2 < rate.ci_high  # a 95 % interval; this seed's draw (fixed) covers the truth


@pytest.mark.fp_exact
def test_geometric_decay_reports_the_ratio_per_generation():
    # trace_cov = 2 x 0.8^(g-1), as the fully-synthetic Gaussian loop at λ = 0.8 in expectation
    g = np.arange(1, 11)
    exact = collapse_profile(frame(2 * 0.8 ** (g - 1), metric="trace_cov"))
    assert row(exact, "rate", "trace_cov").estimate == pytest.approx(0.8, rel=EXACT)
    assert row(exact, "rate", "trace_cov").unit == "ratio per generation"
    # default level: 10 % worse than generation 1 = 1.8, crossed where 2 x 0.8^(g-1) = 1.8 between g = 1 and 2:
    # the linear interpolation gives 1 + (1.8 - 2) / (1.6 - 2) = 1.5
    assert row(exact, "crossing", "trace_cov").estimate == pytest.approx(1.5, rel=EXACT)
    noisy = collapse_profile(frame(2 * 0.8 ** (g - 1), metric="trace_cov", noise=0.05, multiplicative=True))
    r = row(noisy, "rate", "trace_cov")
    direct = np.exp(np.mean([np.polyfit(g, np.log(run.sort_values("generation").value), 1)[0]
                             for _, run in frame(2 * 0.8 ** (g - 1), metric="trace_cov", noise=0.05,
                                                 multiplicative=True).groupby("seed")]))
    assert r.estimate == pytest.approx(direct, rel=LSTSQ) and r.ci_low < 0.8 < r.ci_high


@pytest.mark.fp_exact
def test_crossing_interpolates_a_known_noisy_crossing():
    g = np.arange(1, 21)
    data = frame(0.05 * g, seeds=10, noise=0.02, rng=np.random.default_rng(3))
    profile = collapse_profile(data, levels={"w2": 0.5})  # truth: 0.05 g = 0.5 at g = 10
    c = row(profile, "crossing")
    mean = data.groupby("generation").value.mean().to_numpy()
    # the same interpolation on a seed mean summed in another order (pandas groupby vs numpy): EXACT bounds it
    assert c.estimate == pytest.approx(crossing_generation(mean, g, 0.5, +1), rel=EXACT)
    # near the crossing the mean curve is 0.05 g + e, e ~ N(0, 0.02 / sqrt(10)): the crossing moves by -e / 0.05,
    # so its sd is sd_c = 0.02 / sqrt(10) / 0.05 = 0.126 generations. The estimate is within 4 sd_c of 10 (a 6e-5
    # two-sided chance to fail), and the bootstrap interval's width is 2 x 1.96 sd_c up to the sampling error of
    # a 10-seed sd (relative sd ~ 1 / sqrt(2 x 9) = 0.24): a factor of 2 either way is beyond 4 of those sds.
    sd_c = 0.02 / math.sqrt(10) / 0.05
    assert abs(c.estimate - 10) < 4 * sd_c
    assert 0.5 * 3.92 * sd_c < c.ci_high - c.ci_low < 2 * 3.92 * sd_c


def test_never_crossing_is_infinite_and_said():
    profile = collapse_profile(frame(np.full(8, 0.1), noise=0.001), levels={"w2": 5.0})
    c = row(profile, "crossing")
    assert math.isinf(c.estimate) and c.status == "not crossed"


def test_flattening_is_detected_and_a_rising_curve_is_not_flat():
    g = np.arange(1, 31)
    flat = collapse_profile(frame(1.0 - 0.8 * np.exp(-g / 2.0), seeds=8, noise=0.005))
    s = row(flat, "stationary")
    assert s.status == "flattened" and s.ci_low < 1.0 < s.ci_high + 1e-3
    rising = collapse_profile(frame(0.1 * g, seeds=8, noise=0.005))
    assert row(rising, "stationary").status == "still worsening"
    assert row(rising, "drift").ci_low > 0


@pytest.mark.fp_exact
def test_arms_are_profiled_separately_and_tagged():
    g = np.arange(1, 9)
    data = pd.concat([frame(0.1 * g, arm="replace"), frame(0.05 * g, arm="accumulate")])
    profile = collapse_profile(data)
    assert set(profile.scheme) == {"replace", "accumulate"}
    rates = profile[profile.quantity == "rate"].set_index("scheme").estimate
    assert rates["replace"] == pytest.approx(0.1, rel=EXACT) and rates["accumulate"] == pytest.approx(0.05, rel=EXACT)
    assert set(profile.collapse) == {"risk-increase, catastrophic-risk"} and set(profile.worse) == {"higher is worse"}


def test_arm_curves_keep_the_generations_every_run_reached():
    data = frame(np.arange(1, 7) * 1.0)
    data = data[~((data.seed == 0) & (data.generation > 4))]  # one run stopped at generation 4
    assert list(arm_curves(data).generations) == [1, 2, 3, 4]


def test_profile_and_metrics_commands_on_a_results_folder(cli, write_spec, tmp_path):
    spec = gaussian_spec(generations=6)
    spec["sweep"] = {"loop.bias": [1.0, 0.7], "seed": [0, 1, 2]}
    out = tmp_path / "out"
    assert cli("run", write_spec(spec), "--out", out, "--no-ray")[0] == 0
    code, stdout, err = cli("profile", out, "--metric", "trace_cov", "--level", "trace_cov=1.5",
                            "--csv", tmp_path / "p.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "p.csv")
    assert set(table.bias) == {1.0, 0.7} and set(table.quantity) >= {"rate", "crossing", "stationary", "drift"}
    assert "variance-collapse" in stdout
    code, _, err = cli("profile", out, "--metric", "nope")
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1
    code, stdout, _ = cli("metrics", "--kind", "tokens")
    assert code == 0 and "perplexity" in stdout and "w2 " not in stdout


@pytest.mark.fp_exact
def test_report_summary_shows_seed_spread_and_the_profile(cli, write_spec, tmp_path):
    from madlab.report import make_report, open_results
    from madlab.report.summary import generation_table

    spec = gaussian_spec(generations=5)
    spec["metrics"] = {"names": ["w2", "trace_cov"]}
    spec["sweep"] = {"loop.bias": [1.0, 0.7], "seed": [0, 1, 2]}
    out = tmp_path / "out"
    assert cli("run", write_spec(spec), "--out", out, "--no-ray")[0] == 0
    results = open_results(out)
    table = generation_table(results, ("w2", "trace_cov"))
    values = results.values
    mine = values[(values.bias == 0.7) & (values.metric == "w2") & (values.generation == 5)]["value"]
    row = table[table.bias == 0.7].iloc[0]
    # the same numbers, the std of 3 values in pandas on both sides, possibly in another order: EXACT bounds it
    assert row["w2 @last sd"] == pytest.approx(mine.std(ddof=1), rel=EXACT)
    make_report(str(out))
    html = (out / "figures" / "index.html").read_text()
    assert "Collapse profile" in html and " ± " in html and "variance-collapse" in html
