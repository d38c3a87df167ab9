"""Gaussian loop theory: closed-form moments and the effective-sample-size Monte Carlo of MAD §5.

Two things the report overlays on, or sets beside, measured runs of the Gaussian generator
(fit = sample mean + unbiased 1/(n-1) covariance of the pooled training set, sample
N(mu, λΣ)) on real data N(0, I_d):

* :func:`expected_moments` — E[trace Σ_t] and E[|mu_t|^2] per generation, exact (no
  large-n approximation) for the fully-synthetic, fixed-real and fresh-real schemes. For the
  fully-synthetic loop it reduces to E[trace Σ_t] = λ^(t-1) trace Σ_real: generation 1 fits
  real data, and each later fit is unbiased for the λ-scaled covariance it samples from
  (MAD writes this λ^t trace Σ_0 with generations counted from 0).

* :func:`effective_sample_size` — MAD Figs. 11/12. The fresh-real loop (n_r new real +
  n_s synthetic samples per generation) converges to a limit law that does not depend on
  where it started; MAD (Eqs. 3-4) measures that limit by its *effective sample size* n_e:
  the number of real samples whose plain estimator (one fit, no loop) has the same expected
  distance to the real distribution as the loop's limit model,
  E[W2(G_n_e, P)] = lim_t E[W2(G_t, P)]. Both sides are estimated by Monte Carlo.

Why the Monte Carlo is hand-written: a generation only needs the pooled sample mean and
scatter matrix, and for Gaussian data those are drawn exactly from their sampling laws
(mean ~ N(mu, Σ/n), scatter ~ Wishart(Σ, n-1), Bartlett decomposition) in O(d^3),
independent of n. So one generation of *every* (grid cell, repetition) chain is a handful of
batched numpy operations on a (cells x reps, d, d) stack, and a whole 10 x 10 grid advances
together. The limit is read off by running each chain past its burn-in (several relaxation
times 1/(1-p), p = n_s/(n_r+n_s)) and averaging W2 over the remaining generations and the
repetitions (the chain is ergodic). W2 to N(0, I) needs only the eigenvalues of Σ:
W2^2 = |mu|^2 + sum_i (sqrt(σ_i) - 1)^2.

Command line (the Fig. 11/12 grids; a loop spec cannot express them, see loops/fig11_12_ess.yaml).
`madlab run`/`madlab validate` dispatch any spec with a top-level ``ess`` mapping here::

    madlab run loops/fig11_12_ess.yaml --preset cpu --out results/fig11_12_ess
    python -m madlab.engine.theory ess loops/fig11_12_ess.yaml --preset cpu --out results/fig11_12_ess  # same
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from madlab import __version__
from madlab.core.errors import ConfigError, MadlabError
from madlab.core.files import atomic_write_json, atomic_write_table
from madlab.specs import parse_override
from madlab.store.storage import ESS_CURVE, ESS_TABLE, RUN_INFO

# ----------------------------------------------------------------------------- closed form


#: the schemes :func:`expected_moments` has a closed form for
CLOSED_FORM_SCHEMES = ("fully-synthetic", "fixed-real", "fresh-real")


def expected_moments(generations: int, *, scheme: str, n_real: int, n_synthetic: int, bias: float = 1.0,
                     dim: int = 1, n_initial: int | None = None) -> dict[str, np.ndarray]:
    """Exact E[trace Σ_t] and E[|mu_t|^2], t = 1..generations, of the Gaussian loop on N(0, I_d).

    Recursions over the pooled training set of generation t+1 (real part r: n_r rows, synthetic
    part s: n_s rows from N(mu_t, λΣ_t)); with n = n_r + n_s, the unbiased covariance is
    [S_r + S_s + (n_r n_s / n)(m_r - m_s)(m_r - m_s)^T] / (n - 1). Taking traces and
    expectations gives a linear recursion in a_t = E tr Σ_t, b_t = E|mu_t|^2 and
    c_t = E[mu_t · m_r] (the correlation with the real mean, nonzero only when the same real
    rows are reused, i.e. fixed-real).
    """
    if scheme not in CLOSED_FORM_SCHEMES:
        raise ConfigError(f"scheme: no closed form for {scheme!r} (fully-synthetic, fixed-real, fresh-real)")
    d = float(dim)
    n_r = 0 if scheme == "fully-synthetic" else n_real
    n_s = n_synthetic
    first = n_initial if (scheme == "fresh-real" and n_initial) else n_real
    a, b = d, d / first
    c = d / first if scheme == "fixed-real" else 0.0
    r = d / n_r if n_r else 0.0
    trace, mean_sq = [a], [b]
    n = n_r + n_s
    for _ in range(generations - 1):
        synth_mean_sq = b + bias * a / n_s
        between = (n_r * n_s / n) * (r - 2 * c + synth_mean_sq) if n_r else 0.0
        a_next = ((n_r - 1) * d * (n_r > 0) + (n_s - 1) * bias * a + between) / (n - 1)
        b_next = (n_r * n_r * r + 2 * n_r * n_s * c + n_s * n_s * synth_mean_sq) / n**2
        if scheme == "fixed-real":
            c = (n_r * r + n_s * c) / n
        a, b = a_next, b_next
        trace.append(a)
        mean_sq.append(b)
    return {"generation": np.arange(1, generations + 1), "trace_cov": np.array(trace),
            "mean_sq": np.array(mean_sq)}


# ----------------------------------------------------------------------------- sampling laws


def _wishart_identity(rng: np.random.Generator, dof: int, dim: int, size: int) -> np.ndarray:
    """`size` draws of Wishart(I_dim, dof): Bartlett's A A^T when dof >= dim, else G^T G."""
    a = _wishart_factor(rng, dof, dim, size)
    return a @ a.transpose(0, 2, 1)


def _w2_to_standard(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """W2(N(mean, cov), N(0, I)) for a stack of Gaussians."""
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    return np.sqrt((mean**2).sum(-1) + ((np.sqrt(eig) - 1.0) ** 2).sum(-1))


def _fit_real(rng, n: np.ndarray | int, dim: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and scatter of n rows of N(0, I) (n may differ per batch row)."""
    n = np.broadcast_to(np.asarray(n), (size,))
    mean = rng.standard_normal((size, dim)) / np.sqrt(n)[:, None]
    scatter = np.empty((size, dim, dim))
    for value in np.unique(n):
        rows = np.flatnonzero(n == value)
        scatter[rows] = _wishart_identity(rng, int(value) - 1, dim, len(rows))
    return mean, scatter


def plain_error_curve(dim: int, sizes, *, reps: int = 20000, seed: int = 0) -> np.ndarray:
    """E[W2(N(mean_n, cov_n), N(0, I))] of the one-shot fit on n real samples, for each n."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        errs = []
        for start in range(0, reps, 5000):
            m = min(5000, reps - start)
            mean, scatter = _fit_real(rng, int(n), dim, m)
            errs.append(_w2_to_standard(mean, scatter / (n - 1)))
        out.append(np.concatenate(errs).mean())
    return np.array(out)


def fresh_real_limit_error(n_real, n_synthetic, bias, *, dim: int, reps: int, seed=0,
                           burn_in: float = 2.0, window: float = 4.0, min_generations: int = 10,
                           thin: int = 1) -> dict[str, np.ndarray]:
    """lim_t E[W2(G_t, N(0, I))] of the Gaussian fresh-real loop, for many cells at once.

    ``n_real``, ``n_synthetic``, ``bias`` are equal-length arrays (one entry per grid cell);
    each cell gets ``reps`` independent chains. The limit does not depend on the start (MAD
    Fig. 10), so a chain starts near its stationary law, to shorten the burn-in: Σ_0 = c ×
    Wishart(I, m - 1)/(m - 1), mu_0 ~ N(0, v I), with c = (1-p)/(1-λp) the fixed point of the
    covariance recursion, m the λ = 1 effective size and v the stationary variance of the
    mean recursion (all approximate: the burn-in removes what they miss). p = n_s/(n_r+n_s)
    is the contraction factor of the mean recursion, so a cell relaxes in tau = 1/(1-p)
    generations; it runs ``burn_in`` tau, then W2 is averaged over ``window`` tau more
    (at least ``min_generations`` each). A cell leaves the batch when its window ends, so
    the work is proportional to the sum of the cells' relaxation times, not cells x the
    slowest one. Returns the per-cell mean error and mean trace of Σ, their Monte-Carlo
    standard errors (spread of per-chain averages), the generations run and each chain's
    average error (``per_chain``, cells x reps: the threshold search's per-seed statistic).
    """
    n_r = np.asarray(n_real, dtype=np.int64)
    n_s = np.asarray(n_synthetic, dtype=np.int64)
    lam = np.asarray(bias, dtype=np.float64)
    cells = len(n_r)
    n = n_r + n_s
    p = n_s / n
    tau = 1.0 / (1.0 - p)
    start = np.maximum(np.ceil(burn_in * tau), min_generations).astype(int)
    stop = start + np.maximum(np.ceil(window * tau), min_generations).astype(int)

    order = np.argsort(-stop, kind="stable")  # slowest cells first: the active chains are a prefix
    rng = np.random.default_rng(seed)
    cell = np.repeat(order, reps)
    chains = dict(n_r=n_r[cell], n_s=n_s[cell], n=n[cell], lam=lam[cell])
    start_b, stop_b = start[cell], stop[cell]
    mu, cov = _stationary_start(rng, p[cell], dim, **chains)

    sums, trace_sums, counts = np.zeros(len(cell)), np.zeros(len(cell)), np.zeros(len(cell))
    for t in range(1, int(stop.max()) + 1):
        k = int(np.searchsorted(-stop_b, -t, side="right"))  # chains with stop >= t
        _fresh_real_generation(rng, mu, cov, k, dim, **chains)
        if t % thin == 0:
            rows = np.flatnonzero(start_b[:k] < t)
            if len(rows):
                sums[rows] += _w2_to_standard(mu[rows], cov[rows])
                trace_sums[rows] += np.trace(cov[rows], axis1=1, axis2=2)
                counts[rows] += 1
    per_chain = np.empty((cells, reps))
    per_chain[order] = (sums / counts).reshape(cells, reps)
    traces = np.empty((cells, reps))
    traces[order] = (trace_sums / counts).reshape(cells, reps)
    return {"error": per_chain.mean(1), "stderr": per_chain.std(1, ddof=1) / math.sqrt(reps),
            "trace_cov": traces.mean(1), "trace_cov_stderr": traces.std(1, ddof=1) / math.sqrt(reps),
            "generations": stop, "burn_in": start, "per_chain": per_chain}


def _stationary_start(rng, p, dim: int, *, n_r, n_s, n, lam) -> tuple[np.ndarray, np.ndarray]:
    """(mu_0, Σ_0) per chain, near the stationary law (see :func:`fresh_real_limit_error`)."""
    c = (1 - p) / (1 - lam * p)
    v = ((1 - p) ** 2 / n_r + p**2 * lam * c / n_s) / (1 - p**2)
    m = np.maximum(np.round(n_r * (n_r + 2 * n_s) / n), dim + 1).astype(np.int64)
    mu = rng.standard_normal((len(p), dim)) * np.sqrt(v)[:, None]
    cov = np.empty((len(p), dim, dim))
    for value in np.unique(m):
        rows = np.flatnonzero(m == value)
        cov[rows] = _wishart_identity(rng, int(value) - 1, dim, len(rows)) / (value - 1)
    cov *= c[:, None, None]
    return mu, cov


def _fresh_real_generation(rng, mu: np.ndarray, cov: np.ndarray, k: int, dim: int, *, n_r, n_s, n, lam) -> None:
    """One generation of the first ``k`` chains, in place: fit on n_r fresh real rows and n_s samples of
    N(mu, λΣ), drawn through their exact sampling laws (means and Wishart scatters)."""
    sl = slice(0, k)
    m_r, s_r = _fit_real(rng, n_r[sl], dim, k)
    chol = np.linalg.cholesky(lam[sl, None, None] * cov[sl] + 1e-12 * np.eye(dim))
    z = rng.standard_normal((k, dim)) / np.sqrt(n_s[sl])[:, None]
    m_s = mu[sl] + np.einsum("bij,bj->bi", chol, z)
    s_s = _scaled_wishart(rng, chol, n_s[sl] - 1)
    diff = m_r - m_s
    scatter = s_r + s_s + (n_r[sl] * n_s[sl] / n[sl])[:, None, None] * diff[:, :, None] * diff[:, None, :]
    mu[sl] = (n_r[sl, None] * m_r + n_s[sl, None] * m_s) / n[sl, None]
    cov[sl] = scatter / (n[sl] - 1)[:, None, None]


def _scaled_wishart(rng, chol: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Wishart(L L^T, dof) per batch row: L W L^T with W ~ Wishart(I, dof)."""
    out = np.empty_like(chol)
    dim = chol.shape[-1]
    for value in np.unique(dof):
        rows = np.flatnonzero(dof == value)
        la = chol[rows] @ _wishart_factor(rng, int(value), dim, len(rows))
        out[rows] = la @ la.transpose(0, 2, 1)
    return out


def _wishart_factor(rng, dof: int, dim: int, size: int) -> np.ndarray:
    """A with A A^T ~ Wishart(I, dof): Bartlett's lower-triangular factor (dof >= dim),
    else the (dim x dof) matrix of standard normals."""
    if dof < dim:
        return rng.standard_normal((size, dim, dof))
    a = np.tril(rng.standard_normal((size, dim, dim)), -1)
    diag = np.arange(dim)
    a[:, diag, diag] = np.sqrt(rng.chisquare(dof - diag, size=(size, dim)))
    return a


def effective_n(limit_error: np.ndarray, sizes: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert the plain-estimator error curve: n with E[W2(G_n)] = limit_error (MAD Eq. 4).

    Interpolates log error against log n (error ~ n^(-1/2) there). Values outside the curve
    are clipped to its ends and flagged (``censored``: -1 below the smallest n, +1 above).
    """
    curve = np.minimum.accumulate(curve)  # Monte-Carlo noise must not make the inverse ambiguous
    log_n, log_e = np.log(sizes), np.log(curve)
    order = np.argsort(log_e)
    target = np.log(limit_error)
    n_e = np.exp(np.interp(target, log_e[order], log_n[order]))
    censored = np.where(target > log_e[0], -1, np.where(target < log_e[-1], 1, 0))
    return n_e, censored


# ----------------------------------------------------------------------------- the Fig. 11/12 study


@dataclass
class EssStudy:
    """Settings of the Fig. 11/12 Monte Carlo (one YAML mapping, see loops/fig11_12_ess.yaml)."""

    dim: int = 10
    reps: int = 200
    seed: int = 0
    curve_reps: int = 20000
    burn_in: float = 2.0
    window: float = 4.0
    #: Fig. 11: n_e / n_r over a grid of (n_r, n_s), one panel per λ
    fig11_bias: list = field(default_factory=lambda: [1.0, 0.9, 0.7])
    fig11_n_real: list = field(default_factory=lambda: _loggrid(100, 10_000, 10))
    fig11_n_synthetic: list = field(default_factory=lambda: _loggrid(100, 10_000, 10))
    #: Fig. 12: n_e / n_r over a grid of (λ, n_s) at a fixed n_r
    fig12_n_real: int = 1000
    fig12_bias: list = field(default_factory=lambda: [round(x, 3) for x in np.linspace(0.5, 1.0, 10)])
    fig12_n_synthetic: list = field(default_factory=lambda: _loggrid(100, 10_000, 10))

    def cells(self) -> list[tuple[str, float, int, int]]:
        """(figure, λ, n_r, n_s) of every grid cell: Fig. 11's λ x n_r x n_s, then Fig. 12's λ x n_s."""
        fig11 = [("fig11", float(lam), int(nr), int(ns))
                 for lam in self.fig11_bias for nr in self.fig11_n_real for ns in self.fig11_n_synthetic]
        fig12 = [("fig12", float(lam), int(self.fig12_n_real), int(ns))
                 for lam in self.fig12_bias for ns in self.fig12_n_synthetic]
        return fig11 + fig12

    @classmethod
    def from_mapping(cls, data: dict, where: str = "") -> "EssStudy":
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known:
                raise ConfigError(f"{where}{key}: unknown key (allowed: {', '.join(sorted(known))})")
        study = cls(**data)
        if study.dim < 1 or study.reps < 2 or study.curve_reps < 2:
            raise ConfigError(f"{where}dim/reps/curve_reps: dim >= 1 and reps, curve_reps >= 2 required")
        sizes = list(study.fig11_n_real) + list(study.fig11_n_synthetic) + [study.fig12_n_real] + list(study.fig12_n_synthetic)
        if any(int(s) != s or s < 2 for s in sizes):
            raise ConfigError(f"{where}fig11_n_real/n_synthetic, fig12_*: sample sizes must be integers >= 2")
        if any(not 0 < b <= 1 for b in list(study.fig11_bias) + list(study.fig12_bias)):
            raise ConfigError(f"{where}fig11_bias/fig12_bias: λ must be in (0, 1]")
        return study


def _loggrid(lo: int, hi: int, k: int) -> list[int]:
    return [int(round(v)) for v in np.geomspace(lo, hi, k)]


def run_ess_study(study: EssStudy, log=print):
    """Both grids as one tidy table (pandas), with timing and Monte-Carlo error columns."""

    t0 = time.perf_counter()
    cells = study.cells()
    frame = pd.DataFrame(cells, columns=["figure", "bias", "n_real", "n_synthetic"])

    top = 4 * max(frame.n_real.max(), frame.n_synthetic.max())
    sizes = np.unique(np.geomspace(2, top, 70).round().astype(int))
    curve = plain_error_curve(study.dim, sizes, reps=study.curve_reps, seed=study.seed + 1)
    t_curve = time.perf_counter() - t0
    log(f"plain-estimator error curve: {len(sizes)} sizes x {study.curve_reps} reps in {t_curve:.1f}s")

    # Each (figure, λ) slab advances together; the two halves of the repetitions (separate seeds)
    # give two independent n_e estimates whose spread measures the Monte-Carlo noise.
    errors, stderrs, gens, halves = [], [], [], []
    for (fig, lam), slab in frame.groupby(["figure", "bias"], sort=False):
        t1 = time.perf_counter()
        half = []
        for k in range(2):
            res = fresh_real_limit_error(slab.n_real.values, slab.n_synthetic.values, slab.bias.values,
                                         dim=study.dim, reps=study.reps // 2, burn_in=study.burn_in,
                                         window=study.window,
                                         seed=[study.seed, int(fig[3:]), round(lam * 1e6), k])
            half.append(res)
        err = (half[0]["error"] + half[1]["error"]) / 2
        se = np.sqrt(half[0]["stderr"] ** 2 + half[1]["stderr"] ** 2) / 2
        errors.append(pd.Series(err, index=slab.index))
        stderrs.append(pd.Series(se, index=slab.index))
        gens.append(pd.Series(half[0]["generations"], index=slab.index))
        halves.append(pd.DataFrame({"h0": half[0]["error"], "h1": half[1]["error"]}, index=slab.index))
        log(f"{fig} λ={lam:g}: {len(slab)} cells x {study.reps} chains, "
            f"{int(half[0]['generations'].max())} generations max, {time.perf_counter() - t1:.1f}s")
    frame["limit_w2"] = pd.concat(errors)
    frame["limit_w2_stderr"] = pd.concat(stderrs)
    frame["generations"] = pd.concat(gens)
    h = pd.concat(halves)
    frame["n_e"], frame["censored"] = effective_n(frame.limit_w2.values, sizes, curve)
    n_e0, _ = effective_n(h.h0.values, sizes, curve)
    n_e1, _ = effective_n(h.h1.values, sizes, curve)
    frame["n_e_halves_reldiff"] = np.abs(n_e0 - n_e1) / frame["n_e"]
    frame["ratio"] = frame.n_e / frame.n_real
    frame["dim"] = study.dim
    frame["reps"] = study.reps
    seconds = time.perf_counter() - t0
    curve_frame = pd.DataFrame({"n": sizes, "plain_w2": curve})
    return frame, curve_frame, seconds


def n_e_mean_only(n_real, n_synthetic):
    """Large-n n_e of the unbiased (λ = 1) fresh-real loop from the mean/covariance recursions.

    Both moments follow x_{t+1} = (1-p) real_estimate + p x_t + noise with p = n_s/n, whose
    stationary variance is that of a plain estimate on n_r (n_r + 2 n_s) / (n_r + n_s) samples:
    synthetic data can at most double the effective sample size. Used to check the Monte Carlo.
    """
    n_real, n_synthetic = np.asarray(n_real, float), np.asarray(n_synthetic, float)
    return n_real * (n_real + 2 * n_synthetic) / (n_real + n_synthetic)


# ----------------------------------------------------------------------------- command line


ESS_TOP_LEVEL = ("name", "ess", "presets", "out")


def _load_study(path: str, preset: str | None, overrides: list[str]) -> tuple[EssStudy, dict]:

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such spec file")
    raw = yaml.safe_load(p.read_text()) or {}
    if not isinstance(raw, dict) or "ess" not in raw:
        raise ConfigError(f"{path}: an effective-sample-size spec needs a top-level 'ess' mapping")
    unknown = [k for k in raw if k not in ESS_TOP_LEVEL]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key of an ess spec (allowed: {', '.join(ESS_TOP_LEVEL)})")
    if not isinstance(raw["ess"] or {}, dict):
        raise ConfigError("ess: must be a mapping of study settings")
    settings = dict(raw["ess"] or {})
    presets = raw.get("presets") or {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"--preset {preset}: not defined in {path} (defined: {', '.join(presets) or 'none'})")
        settings.update({k.removeprefix("ess."): v for k, v in presets[preset].items()})
    for text in overrides:
        key, value = parse_override(text)
        settings[key.removeprefix("ess.")] = value
    return EssStudy.from_mapping(settings, where="ess."), raw


def is_ess_spec(path: str) -> bool:
    """True when ``path`` is a YAML mapping with a top-level ``ess`` key (an ESS study, not a loop)."""

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # the loop-spec loader reports the problem with its own message
    return isinstance(raw, dict) and "ess" in raw


def validate_ess_spec(path: str, preset: str | None = None, overrides: list[str] | None = None) -> EssStudy:
    study, _ = _load_study(path, preset, list(overrides or []))
    return study


def run_ess_spec(path: str, preset: str | None = None, overrides: list[str] | None = None,
                 out: str | None = None, command: str | None = None, log=None) -> Path:
    """Run an ESS study and write ``ess.parquet``, ``ess_curve.parquet`` and ``run.json`` to ``out``
    (default: the spec's ``out``, else ``results/<name>``). Nothing is written if the spec is bad."""
    study, raw = _load_study(path, preset, list(overrides or []))
    out_dir = Path(out or raw.get("out") or Path("results") / str(raw.get("name", "fig11_12_ess")))
    frame, curve, seconds = run_ess_study(study, log=log or (lambda m: print(m, file=sys.stderr, flush=True)))
    out_dir.mkdir(parents=True, exist_ok=True)
    frame["seconds_total"] = seconds
    atomic_write_table(out_dir / ESS_TABLE, frame)
    atomic_write_table(out_dir / ESS_CURVE, curve)
    atomic_write_json(out_dir / RUN_INFO, {
        "spec": path, "name": raw.get("name", "fig11_12_ess"), "preset": preset,
        "command": command or f"madlab run {path}" + (f" --preset {preset}" if preset else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "madlab_version": __version__,
        "kind": "ess-monte-carlo", "settings": asdict(study), "seconds": round(seconds, 1),
        "method": "exact mean/Wishart sampling of each generation's fit, all cells x reps vectorised in numpy; "
                  "limit = W2 averaged after burn-in; n_e by inverting the plain-estimator curve"})
    print(f"wrote {out_dir / ESS_TABLE} ({len(frame)} cells) in {seconds:.1f}s")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m madlab.engine.theory",
                                     description="Gaussian loop theory (MAD Figs. 11/12 Monte Carlo); "
                                                 "`madlab run SPEC` does the same for a spec with an 'ess' mapping")
    sub = parser.add_subparsers(dest="command", required=True)
    ess = sub.add_parser("ess", help="effective-sample-size grids of the Gaussian fresh-real loop")
    ess.add_argument("spec", help="YAML with an 'ess' mapping (e.g. loops/fig11_12_ess.yaml)")
    ess.add_argument("--preset", default=None, help="named preset of the spec, e.g. cpu")
    ess.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ess.add_argument("--out", default=None, help="results folder (gets ess.parquet, ess_curve.parquet, run.json); "
                                                 "default: the spec's out, else results/<name>")
    args = parser.parse_args(argv)
    command = " ".join(["python", "-m", "madlab.engine.theory"] + (argv if argv is not None else sys.argv[1:]))
    try:
        run_ess_spec(args.spec, args.preset, args.overrides, args.out, command=command)
    except MadlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
