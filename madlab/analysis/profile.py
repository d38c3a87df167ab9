"""Collapse profile: per arm and metric, how fast, how soon and how far a loop degrades.

    collapse_profile(DIR) -> tidy frame, one row per (arm, metric, quantity)

Quantities, each with a 95 % interval over seeds (``method`` says which interval):

* ``start`` / ``end``: the metric at generation 1 (trained on real data only) and at the last
  generation, mean over seeds with a t interval: the seed spread beside the mean.
* ``rate``: change per generation over the rate window (default: every generation run). An
  OLS slope per seed, or for a multiplicative metric (:data:`MetricInfo.multiplicative`, e.g.
  ``trace_cov``, which decays as λ^(t-1) in the fully-synthetic Gaussian loop) the ratio
  exp(slope of log value) per generation; t interval over the per-seed estimates.
* ``crossing``: the first generation at which the seed-mean curve crosses the stated level in
  the worse direction, linearly interpolated between generations (1 if generation 1 is already
  past it, inf if it never crosses); percentile bootstrap over seeds (an upper end of inf: some
  resamples do not cross within the generations run).
* ``stationary``: the level of the last ``window`` generations (default: the last third, at
  least 3), mean of per-seed window means, t interval; and ``drift``: the change over that
  window (per-seed OLS slope x (window - 1)), t interval. ``status`` states the flattening:
  ``flattened`` when the drift's interval lies inside ±flat_tol x the curve's scale (the range of
  the seed-mean curve, or the seeds' spread if larger: an equivalence test), ``still worsening``
  / ``still improving`` when it excludes 0, ``undetermined`` otherwise.

Generations are counted as madlab counts them: generation 1 is trained on real data only.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from madlab.analysis.curves import Curves, arm_curves, arms, load, select
from madlab.analysis.intervals import bootstrap_indices, percentile_interval, t_interval
from madlab.analysis.metric_info import COLLAPSE_DEFINITIONS, metric_info, worse_direction
from madlab.core.errors import MadlabError

#: the crossing level when none is stated: 10 % worse than the seed-mean at generation 1
DEFAULT_LEVEL = "10%"
BOOTSTRAP_DRAWS = 2000
FLAT_TOL = 0.1


def ols_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of each row of ``y`` on ``x``."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def rate(curves: Curves, multiplicative: bool, window: tuple[int, int] | None = None):
    """(per-seed rates, unit, method): slope per generation, or ratio per generation on a log scale."""
    g, y = curves.generations, curves.values
    if window is not None:
        keep = (g >= window[0]) & (g <= window[1])
        g, y = g[keep], y[:, keep]
    if len(g) < 2:
        return np.full(len(y), math.nan), "", "fewer than 2 generations"
    if multiplicative and np.all(y > 0):
        return ols_slopes(g.astype(float), np.log(y)), "ratio per generation", \
            f"exp(OLS slope of log value, generations {g[0]}-{g[-1]}) per seed; t interval of the log-slopes"
    return ols_slopes(g.astype(float), y), "change per generation", \
        f"OLS slope per seed, generations {g[0]}-{g[-1]}; t interval over seeds"


def crossing_generation(mean: np.ndarray, generations: np.ndarray, level: float, sign: int) -> float:
    """First generation at which ``mean`` is at or past ``level`` in the worse direction (sign +1:
    higher is worse), linearly interpolated; inf if it never gets there."""
    return float(crossing_generations(mean[None, :], generations, level, sign)[0])


def crossing_generations(means: np.ndarray, generations: np.ndarray, level: float, sign: int) -> np.ndarray:
    """:func:`crossing_generation` of each row of ``means`` (bootstrap replicates, at once)."""
    past = sign * (means - level) >= 0
    j = np.argmax(past, axis=1)
    rows = np.arange(len(means))
    y1, y0 = means[rows, j], means[rows, np.maximum(j - 1, 0)]
    g1, g0 = generations[j].astype(float), generations[np.maximum(j - 1, 0)].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = g0 + (level - y0) / (y1 - y0) * (g1 - g0)
    out = np.where(j == 0, float(generations[0]), between)
    return np.where(past.any(axis=1), out, math.inf)


def crossing(curves: Curves, level: float, sign: int, confidence: float, draws: int = BOOTSTRAP_DRAWS):
    """(generation of the seed-mean curve's crossing, bootstrap interval over seeds)."""
    estimate = crossing_generation(curves.mean, curves.generations, level, sign)
    n = len(curves.seeds)
    index = bootstrap_indices(n, draws)
    weights = np.zeros((draws, n))  # resampled seed means as one product: memory draws x (n + generations)
    np.add.at(weights, (np.arange(draws)[:, None], index), 1.0 / n)
    replicates = crossing_generations(weights @ curves.values, curves.generations, level, sign)
    return estimate, percentile_interval(replicates, confidence)


def stationary(curves: Curves, sign: int, confidence: float, window: int | None = None, flat_tol: float = FLAT_TOL):
    """Rows for the stationary level and the drift over the last ``window`` generations."""
    g, y = curves.generations, curves.values
    w = window or max(3, math.ceil(len(g) / 3))
    if len(g) < w + 1:
        note = f"too few generations ({len(g)}) for a {w}-generation window after generation 1"
        return {"estimate": math.nan, "status": note}, {"estimate": math.nan, "status": note}
    gw, yw = g[-w:].astype(float), y[:, -w:]
    level = t_interval(yw.mean(axis=1), confidence)
    drift = t_interval(ols_slopes(gw, yw) * (gw[-1] - gw[0]), confidence)
    mean_curve = curves.mean
    spread = float(np.std(yw.mean(axis=1), ddof=1)) if len(y) > 1 else 0.0
    scale = max(float(mean_curve.max() - mean_curve.min()), spread)
    margin = flat_tol * scale
    status = _flatness(drift[1], drift[2], margin, sign)
    span = f"generations {int(gw[0])}-{int(gw[-1])}"
    return ({"estimate": level[0], "ci_low": level[1], "ci_high": level[2], "status": status,
             "method": f"mean of per-seed means over {span}; t interval over seeds"},
            {"estimate": drift[0], "ci_low": drift[1], "ci_high": drift[2], "status": status,
             "method": f"per-seed OLS slope x {int(gw[-1] - gw[0])} over {span}; t interval; flattened iff the "
                       f"interval lies within ±{flat_tol:g} x scale ({margin:.3g})"})


def _flatness(low: float, high: float, margin: float, sign: int) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undetermined (one seed)"
    if -margin <= low and high <= margin:
        return "flattened"
    if low > 0 or high < 0:
        return "still worsening" if (low > 0) == (sign > 0) else "still improving"
    return "undetermined"


def resolve_level(spec, start_mean: float, sign: int) -> tuple[float, str]:
    """A level given as a number, or as "P%" (P % worse than the generation-1 mean)."""
    text = str(spec).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1]) / 100
        except ValueError:
            raise MadlabError(f"level {spec!r}: expected a number or a percentage such as 10%") from None
        return start_mean * (1 + sign * share) if start_mean >= 0 else start_mean * (1 - sign * share), \
            f"{text} worse than generation 1 ({start_mean:.4g})"
    try:
        return float(text), "stated"
    except ValueError:
        raise MadlabError(f"level {spec!r}: expected a number or a percentage such as 10%") from None


def metric_profile(curves: Curves, metric: str, *, level=DEFAULT_LEVEL, confidence: float = 0.95,
                   worse: str | None = None, rate_window=None, window: int | None = None,
                   flat_tol: float = FLAT_TOL) -> list[dict]:
    """The profile rows of one arm's curves of one metric (without the arm columns)."""
    direction = worse_direction(metric, worse)
    sign = 1 if direction == "higher" else -1
    info = metric_info(metric)
    multiplicative = bool(info and info.multiplicative)
    n = len(curves.seeds)
    rows = []
    for name, column in (("start", 0), ("end", -1)):
        m, lo, hi, _ = t_interval(curves.values[:, column], confidence)
        rows.append({"quantity": name, "generation": float(curves.generations[column]), "estimate": m,
                     "ci_low": lo, "ci_high": hi, "method": "mean over seeds; t interval"})
    per_seed, unit, method = rate(curves, multiplicative, rate_window)
    m, lo, hi, _ = t_interval(per_seed, confidence)
    if unit == "ratio per generation":
        m, lo, hi = math.exp(m), math.exp(lo) if np.isfinite(lo) else lo, math.exp(hi) if np.isfinite(hi) else hi
    rows.append({"quantity": "rate", "estimate": m, "ci_low": lo, "ci_high": hi, "unit": unit, "method": method})
    value, how = resolve_level(level, float(curves.mean[0]), sign)
    estimate, (lo, hi) = crossing(curves, value, sign, confidence)
    rows.append({"quantity": "crossing", "estimate": estimate, "ci_low": lo, "ci_high": hi, "level": value,
                 "unit": "generation", "status": "crossed" if np.isfinite(estimate) else "not crossed",
                 "method": f"seed-mean curve first at/past level ({how}), interpolated; percentile bootstrap "
                           f"over seeds ({BOOTSTRAP_DRAWS} resamples)"})
    level_row, drift_row = stationary(curves, sign, confidence, window, flat_tol)
    rows += [{"quantity": "stationary", **level_row}, {"quantity": "drift", **drift_row}]
    tags = info.collapse if info else ()
    two_sided = " (two-sided: away from real either way)" if info and info.two_sided else ""
    for row in rows:
        row.update(metric=metric, seeds=n, generations=int(curves.generations[-1]),
                   worse=f"{direction} is worse{two_sided}",
                   collapse=", ".join(tags))
    return rows


COLUMNS = ["metric", "quantity", "estimate", "ci_low", "ci_high", "unit", "status", "level", "generation", "seeds",
           "generations", "worse", "collapse", "method"]


def collapse_profile(source, *, metrics=None, levels: dict | None = None, where: dict | None = None,
                     confidence: float = 0.95, rate_window=None, window: int | None = None,
                     flat_tol: float = FLAT_TOL, worse: dict | None = None) -> pd.DataFrame:
    """The collapse profile of a results folder (a path, a ``Results`` or a tidy frame).

    ``metrics``: names (default: every metric in :data:`METRIC_INFO` the folder has); ``levels``:
    metric -> crossing level (a number, or "P%" worse than generation 1; default 10%); ``where``:
    column -> value, to keep part of a sweep; ``worse``: metric -> "higher"/"lower" for a metric the
    table does not describe. Returns one row per (arm, metric, quantity): the arm columns, then
    :data:`COLUMNS`.
    """
    values, arm_columns = load(source)
    values = select(values, where)
    present = list(dict.fromkeys(values["metric"].astype(str)))
    wanted = list(metrics) if metrics else [m for m in present if metric_info(m) is not None]
    missing = [m for m in wanted if m not in present]
    if missing:
        raise MadlabError(f"metric {missing[0]!r}: not in this folder (it has: {', '.join(present)})")
    rows = []
    for key, arm_rows in arms(values[values["metric"].isin(wanted)], arm_columns):
        for metric, metric_rows in arm_rows.groupby("metric", sort=False):
            curves = arm_curves(metric_rows)
            if not curves.values.size:
                continue
            for row in metric_profile(curves, metric, level=(levels or {}).get(metric, DEFAULT_LEVEL),
                                      confidence=confidence, worse=(worse or {}).get(metric),
                                      rate_window=rate_window, window=window, flat_tol=flat_tol):
                rows.append({**key, **row})
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=arm_columns + COLUMNS) if len(frame) else pd.DataFrame(columns=arm_columns + COLUMNS)


def definitions_used(profile: pd.DataFrame) -> dict[str, str]:
    """The collapse definitions (Schaeffer et al.) the profiled metrics bear on: key -> meaning."""
    keys = {k.strip() for tags in profile.get("collapse", pd.Series(dtype=str)).dropna() for k in tags.split(",")}
    return {k: COLLAPSE_DEFINITIONS[k] for k in COLLAPSE_DEFINITIONS if k in keys}
