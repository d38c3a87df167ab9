"""madlab.engine.theory: closed-form Gaussian-loop moments and the Figs. 11/12 effective-sample-size Monte Carlo.

The closed form is checked against a brute-force simulation of the loop on actual samples
(np.cov of the pooled training set, as the Gaussian generator fits); the Wishart-based Monte
Carlo is checked against the closed form and against the large-n effective size
n_r (n_r + 2 n_s) / (n_r + n_s) of the unbiased loop. Tolerances are five Monte-Carlo
standard errors (or a few percent where the reference is itself asymptotic).
"""
import numpy as np
import pandas as pd
import pytest

from madlab.engine import theory
from madlab.core.errors import ConfigError


def brute_force(scheme, *, n_real, n_synthetic, bias, dim, generations, reps, seed=0, n_initial=None):
    """(reps, generations) trace of Σ_t and |mu_t|^2 from real samples, as the engine's loop does it."""
    rng = np.random.default_rng(seed)
    first = n_initial if n_initial else n_real
    fixed = rng.standard_normal((reps, n_real, dim))
    x = fixed if scheme == "fixed-real" else rng.standard_normal((reps, first, dim))
    traces, means = [], []
    for t in range(generations):
        mu = x.mean(1)
        centred = x - mu[:, None]
        cov = np.einsum("rni,rnj->rij", centred, centred) / (x.shape[1] - 1)
        traces.append(np.trace(cov, axis1=1, axis2=2))
        means.append((mu**2).sum(1))
        chol = np.linalg.cholesky(bias * cov)
        synth = mu[:, None] + np.einsum("rij,rnj->rni", chol, rng.standard_normal((reps, n_synthetic, dim)))
        if scheme == "fully-synthetic":
            x = synth
        elif scheme == "fixed-real":
            x = np.concatenate([fixed, synth], 1)
        else:
            x = np.concatenate([rng.standard_normal((reps, n_real, dim)), synth], 1)
    return np.stack(traces, 1), np.stack(means, 1)


def test_fully_synthetic_trace_is_lambda_power():
    out = theory.expected_moments(8, scheme="fully-synthetic", n_real=50, n_synthetic=50, bias=0.8, dim=3)
    np.testing.assert_allclose(out["trace_cov"], 3 * 0.8 ** np.arange(8))
    assert np.all(np.diff(out["mean_sq"]) > 0)  # the mean random-walks away


@pytest.mark.parametrize("scheme,n_initial", [("fully-synthetic", None), ("fixed-real", None),
                                              ("fresh-real", None), ("fresh-real", 25)])
def test_expected_moments_match_brute_force(scheme, n_initial):
    kw = dict(n_real=6, n_synthetic=9, bias=0.7, dim=2, generations=6)
    traces, means = brute_force(scheme, reps=20000, n_initial=n_initial, **kw)
    exact = theory.expected_moments(kw["generations"], scheme=scheme, n_real=6, n_synthetic=9, bias=0.7,
                                    dim=2, n_initial=n_initial)
    for sim, want in ((traces, exact["trace_cov"]), (means, exact["mean_sq"])):
        se = sim.std(0, ddof=1) / np.sqrt(len(sim))
        assert np.all(np.abs(sim.mean(0) - want) < 5 * se), (sim.mean(0), want, se)


def test_expected_moments_reject_schemes_without_closed_form():
    with pytest.raises(ConfigError, match="scheme"):
        theory.expected_moments(3, scheme="accumulate", n_real=5, n_synthetic=5)


@pytest.mark.parametrize("dof,dim", [(12, 3), (2, 4)])
def test_wishart_moments(dof, dim):
    w = theory._wishart_identity(np.random.default_rng(0), dof, dim, 40000)
    np.testing.assert_allclose(w.mean(0), dof * np.eye(dim), atol=0.1 * dof)
    # Var(W_ii) = 2 dof, Var(W_ij) = dof (i != j)
    assert abs(w[:, 0, 0].var() / (2 * dof) - 1) < 0.05
    assert abs(w[:, 0, 1].var() / dof - 1) < 0.05
    if dof < dim:
        assert np.linalg.matrix_rank(w[0]) == dof


def test_monte_carlo_limit_matches_closed_form_trace():
    """The Wishart-based chain's stationary E tr Σ equals the exact recursion's limit."""
    n_r, n_s, lam, d = np.array([30, 50]), np.array([60, 25]), np.array([0.8, 1.0]), 3
    res = theory.fresh_real_limit_error(n_r, n_s, lam, dim=d, reps=400, seed=1)
    for k in range(2):
        exact = theory.expected_moments(400, scheme="fresh-real", n_real=int(n_r[k]), n_synthetic=int(n_s[k]),
                                        bias=float(lam[k]), dim=d)["trace_cov"][-1]
        assert abs(res["trace_cov"][k] - exact) < 5 * res["trace_cov_stderr"][k], (res["trace_cov"][k], exact)


def test_effective_sample_size_of_unbiased_loop_matches_large_n_formula():
    n_r, n_s = np.array([400, 200]), np.array([400, 2000])
    res = theory.fresh_real_limit_error(n_r, n_s, np.ones(2), dim=4, reps=150, seed=2)
    sizes = np.unique(np.geomspace(50, 3000, 40).round().astype(int))
    curve = theory.plain_error_curve(4, sizes, reps=6000, seed=3)
    n_e, censored = theory.effective_n(res["error"], sizes, curve)
    assert not censored.any()
    np.testing.assert_allclose(n_e, theory.n_e_mean_only(n_r, n_s), rtol=0.08)
    assert np.all(n_e <= 2 * n_r * 1.05)  # synthetic data at most double the effective size


def test_biased_loop_loses_effective_samples_with_more_synthetic_data():
    n_r = np.array([200, 200])
    n_s = np.array([100, 3000])
    res = theory.fresh_real_limit_error(n_r, n_s, np.full(2, 0.8), dim=4, reps=100, seed=4)
    sizes = np.unique(np.geomspace(2, 2000, 40).round().astype(int))
    curve = theory.plain_error_curve(4, sizes, reps=4000, seed=5)
    n_e, _ = theory.effective_n(res["error"], sizes, curve)
    assert n_e[1] < n_e[0] and n_e[1] < 0.5 * n_r[1]


def test_effective_n_inverts_the_curve_and_flags_the_ends():
    sizes = np.array([10, 100, 1000])
    curve = 1 / np.sqrt(sizes)
    n_e, censored = theory.effective_n(np.array([1 / np.sqrt(316.0), 1.0, 1e-3]), sizes, curve)
    assert n_e[0] == pytest.approx(316.0, rel=1e-6)
    assert list(censored) == [0, -1, 1]


def test_command_line_writes_the_grid(tmp_path):
    spec = tmp_path / "ess.yaml"
    spec.write_text("name: tiny_ess\ness: {dim: 2, reps: 20, curve_reps: 500,"
                    " fig11_bias: [1.0, 0.8], fig11_n_real: [100, 300], fig11_n_synthetic: [100, 300],"
                    " fig12_n_real: 100, fig12_bias: [0.9, 1.0], fig12_n_synthetic: [100, 200]}\n"
                    "presets: {cpu: {reps: 10}}\n")
    out = tmp_path / "out"
    assert theory.main(["ess", str(spec), "--preset", "cpu", "--set", "seed=3", "--out", str(out)]) == 0
    table = pd.read_parquet(out / "ess.parquet")
    assert len(table) == 2 * 4 + 2 * 2
    assert set(table["figure"]) == {"fig11", "fig12"}
    assert (table["reps"] == 10).all() and table["n_e"].gt(0).all()
    assert (out / "run.json").is_file()


def test_command_line_rejects_unknown_key(tmp_path, capsys):
    spec = tmp_path / "ess.yaml"
    spec.write_text("ess: {dims: 2}\n")
    assert theory.main(["ess", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "ess.dims: unknown key" in capsys.readouterr().err


TINY_ESS = ("name: tiny_ess\ness: {dim: 2, reps: 10, curve_reps: 500,"
            " fig11_bias: [1.0], fig11_n_real: [100], fig11_n_synthetic: [100, 300],"
            " fig12_n_real: 100, fig12_bias: [0.9], fig12_n_synthetic: [100]}\n")


def test_madlab_run_and_validate_dispatch_an_ess_spec(tmp_path, cli):
    spec = tmp_path / "ess.yaml"
    spec.write_text(TINY_ESS)
    code, out, err = cli("validate", spec)
    assert code == 0, err
    assert "effective-sample-size study, 3 cell(s)" in out
    code, out, err = cli("run", spec, "--out", tmp_path / "res", "--set", "seed=1")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "res" / "ess.parquet")
    assert len(table) == 3 and table["n_e"].gt(0).all()
    assert "madlab report" in out


def test_madlab_run_rejects_a_bad_ess_spec_without_writing(tmp_path, cli):
    spec = tmp_path / "ess.yaml"
    spec.write_text(TINY_ESS + "sweep: {seed: [1, 2]}\n")
    code, out, err = cli("run", spec, "--out", tmp_path / "res")
    assert code == 2
    assert err.strip().endswith("sweep: unknown top-level key of an ess spec (allowed: name, ess, presets, out)")
    assert not (tmp_path / "res").exists()
    spec.write_text(TINY_ESS.replace("fig12_bias: [0.9]", "fig12_bias: [1.5]"))
    code, _, err = cli("validate", spec)
    assert code == 2 and "λ must be in (0, 1]" in err and len(err.strip().splitlines()) == 1


def test_shipped_ess_spec_validates(cli):
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "loops" / "fig11_12_ess.yaml"
    code, out, err = cli("validate", spec, "--preset", "cpu")
    assert code == 0, err
    assert "400 cell(s) x 400 repetitions" in out  # 3 λ x 10 x 10 + 10 λ x 10 n_s; cpu preset reps
