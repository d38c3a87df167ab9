"""Paired comparisons of arms that share seeds.

    compare(DIR, by="scheme", a="accumulate", b="fully-synthetic", where={"bias": 0.8},
            metrics=["modes"], generations=[10]) -> tidy frame

Two arms differ in one setting (``by``) and agree on every other sweep axis. madlab seeds every
random choice from (seed, generation, purpose), so runs of the two arms with the same seed share
their real data draws (common random numbers) and are compared seed by seed: the per-seed
difference a - b removes what the seed alone decides.

For each (cell of the other axes, metric, quantity) a row gives the mean difference over the
shared seeds with

* a paired **t interval** (Student's t on the per-seed differences; exact for normal
  differences), which decides the verdict: ``a higher`` / ``a lower`` when it excludes 0,
  ``not separated at this scale`` when it covers 0;
* the exact two-sided **sign-flip** p-value (all 2^n sign patterns of the differences; no
  normality assumed) and the smallest p-value n seeds can give (2/2^n: 0.0625 for 5 seeds, so
  with 5 seeds no difference is significant at 5 % by this test, whatever its size).

Quantities: the value at each chosen generation (``value@T``), and the per-seed profile
quantities ``rate`` (OLS slope per generation, or the log-slope of a multiplicative metric,
reported as the ratio of the two arms' ratios) and ``stationary`` (mean of the last window).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from madlab.analysis.curves import Curves, arm_curves, load, select
from madlab.analysis.intervals import sign_flip_p, t_interval
from madlab.analysis.metric_info import metric_info, worse_direction
from madlab.analysis.profile import ols_slopes
from madlab.core.errors import MadlabError

NOT_SEPARATED = "not separated at this scale"
METHOD = "paired over shared seeds: t interval of the per-seed differences; exact sign-flip p"
COLUMNS = ["metric", "quantity", "a", "b", "mean_a", "mean_b", "difference", "ci_low", "ci_high", "seeds",
           "sign_flip_p", "min_p", "verdict", "better", "method"]


def paired_interval(diffs, confidence: float = 0.95) -> dict:
    """Mean, t interval, sign-flip p and verdict of per-seed paired differences."""
    mean, low, high, n = t_interval(diffs, confidence)
    p, floor = sign_flip_p(diffs)
    if not (np.isfinite(low) and np.isfinite(high)):
        verdict = "one shared seed: no interval"
    elif low > 0:
        verdict = "a higher"
    elif high < 0:
        verdict = "a lower"
    else:
        verdict = NOT_SEPARATED
    return {"difference": mean, "ci_low": low, "ci_high": high, "seeds": n, "sign_flip_p": p, "min_p": floor,
            "verdict": verdict}


def _better(verdict: str, direction: str, a, b) -> str:
    if verdict not in ("a higher", "a lower"):
        return ""
    a_higher = verdict == "a higher"
    return str(b if a_higher == (direction == "higher") else a)


def per_seed_quantities(curves: Curves, metric: str, generations, window: int | None) -> dict[str, np.ndarray]:
    """quantity -> per-seed values: value@T for each T, rate, stationary."""
    out = {f"value@{int(t)}": curves.at(int(t)) for t in generations}
    g, y = curves.generations.astype(float), curves.values
    info = metric_info(metric)
    if len(g) >= 2:
        log = bool(info and info.multiplicative) and np.all(y > 0)
        out["log-rate" if log else "rate"] = ols_slopes(g, np.log(y) if log else y)
    w = window or max(3, math.ceil(len(g) / 3))
    if len(g) > w:
        out["stationary"] = y[:, -w:].mean(axis=1)
    return out


def compare_curves(ca: Curves, cb: Curves, metric: str, *, generations=(), quantities=None,
                   confidence: float = 0.95, window: int | None = None, labels=("a", "b"),
                   worse: str | None = None) -> list[dict]:
    """Rows comparing two arms' curves of one metric over their shared seeds."""
    shared = sorted(set(ca.seeds.tolist()) & set(cb.seeds.tolist()))
    if len(shared) < 2:
        raise MadlabError(f"{labels[0]} vs {labels[1]}: {len(shared)} shared seed(s); a paired interval needs >= 2")
    ca, cb = ca.take(shared), cb.take(shared)
    if not len(generations):
        generations = [int(min(ca.generations[-1], cb.generations[-1]))]
    qa = per_seed_quantities(ca, metric, generations, window)
    qb = per_seed_quantities(cb, metric, generations, window)
    info = metric_info(metric)
    # no arm is "better" on a two-sided metric (e.g. ref_perplexity: too low is over-sharpened text)
    direction = worse_direction(metric, worse) if (worse or (info and not info.two_sided)) else ""
    rows = []
    for name in qa:
        kind = {"log-rate": "rate"}.get(name, name.split("@")[0])  # what --quantity names it
        if name not in qb or (quantities and kind not in quantities and name not in quantities):
            continue
        row = {"metric": metric, "quantity": name, "a": labels[0], "b": labels[1],
               "mean_a": float(qa[name].mean()), "mean_b": float(qb[name].mean()),
               **paired_interval(qa[name] - qb[name], confidence), "method": METHOD}
        if name == "log-rate":  # report ratios: exp of the mean log-slope difference is ratio_a / ratio_b
            row.update(quantity="rate ratio", mean_a=math.exp(row["mean_a"]), mean_b=math.exp(row["mean_b"]),
                       difference=math.exp(row["difference"]), ci_low=math.exp(row["ci_low"]),
                       ci_high=math.exp(row["ci_high"]),
                       method=METHOD + " (on log-slopes; difference, interval: ratio a/b per generation)")
        row["better"] = _better(row["verdict"], direction, *labels) if direction else ""
        rows.append(row)
    return rows


def compare(source, *, by: str, a=None, b=None, where: dict | None = None, metrics=None, generations=(),
            quantities=None, confidence: float = 0.95, window: int | None = None,
            worse: dict | None = None) -> pd.DataFrame:
    """Paired comparisons of the arms that differ only in ``by`` (all pairs of its values, or
    ``a`` vs ``b``), within each cell of the other sweep axes. Returns one row per (cell, pair,
    metric, quantity): the cell's columns, then :data:`COLUMNS`."""
    values, arm_columns = load(source)
    values = select(values, where)
    if by not in values.columns:
        raise MadlabError(f"--by {by}: no such column (sweep axes: {', '.join(arm_columns) or 'none'})")
    present = list(dict.fromkeys(values["metric"].astype(str)))
    wanted = list(metrics) if metrics else [m for m in present if metric_info(m) is not None]
    for m in wanted:
        if m not in present:
            raise MadlabError(f"metric {m!r}: not in this folder (it has: {', '.join(present)})")
    levels = list(dict.fromkeys(values[by].tolist()))
    pairs = [(x, y) for i, x in enumerate(levels) for y in levels[i + 1:]]
    if a is not None or b is not None:
        pairs = [(_level(levels, a, by), _level(levels, b, by))]
    cell_columns = [c for c in arm_columns if c != by and c not in (where or {})]
    rows = []
    for cell, cell_rows in (values.groupby(cell_columns, sort=True, dropna=False) if cell_columns else [((), values)]):
        cell = dict(zip(cell_columns, cell if isinstance(cell, tuple) else (cell,)))
        for x, y in pairs:
            ra, rb = cell_rows[cell_rows[by] == x], cell_rows[cell_rows[by] == y]
            if ra.empty or rb.empty:
                continue
            for metric in wanted:
                ca = arm_curves(ra[ra["metric"] == metric])
                cb = arm_curves(rb[rb["metric"] == metric])
                for row in compare_curves(ca, cb, metric, generations=generations, quantities=quantities,
                                          confidence=confidence, window=window, labels=(x, y),
                                          worse=(worse or {}).get(metric)):
                    rows.append({**cell, **row})
    if not rows:
        raise MadlabError(f"--by {by}: no cell holds both arms ({', '.join(map(str, levels))} found)")
    return pd.DataFrame(rows).reindex(columns=cell_columns + COLUMNS)


def _level(levels: list, wanted, by: str):
    for level in levels:
        if str(level) == str(wanted) or _same_number(level, wanted):
            return level
    raise MadlabError(f"{by}={wanted}: no runs have it (values: {', '.join(map(str, levels))})")


def _same_number(x, y) -> bool:
    try:
        return math.isclose(float(x), float(y), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False
