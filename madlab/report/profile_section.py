"""The report's collapse-profile section: per configuration and headline metric, the rate per
generation, the first crossing of "10 % worse than generation 1", and the stationary level with
its flattening verdict, each with its 95 % interval over seeds (:mod:`madlab.analysis.profile`),
and the collapse definitions (Schaeffer et al. 2025) the metrics measure."""
from __future__ import annotations

import html
import math

from madlab.analysis.profile import collapse_profile, definitions_used
from madlab.analysis.results import Results
from madlab.core.errors import MadlabError


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3g}"


def _interval(row) -> str:
    return f"{_num(row.estimate)} [{_num(row.ci_low)}, {_num(row.ci_high)}]"


def profile_html(results: Results, metrics: list[str]) -> str:
    """The section's HTML ("" when the folder has no profile to show: no table, no described metric)."""
    try:
        profile = collapse_profile(results, metrics=metrics or None)
    except MadlabError:
        return ""
    if profile.empty:
        return ""
    e = html.escape
    arm_columns = list(profile.columns[:list(profile.columns).index("metric")])
    body = []
    for key, rows in profile.groupby(arm_columns + ["metric"], sort=False, dropna=False):
        by = {r.quantity: r for r in rows.itertuples()}
        key = key if isinstance(key, tuple) else (key,)
        cells = "".join(f"<td>{e(str(v))}</td>" for v in key)
        rate, cross, level = by["rate"], by["crossing"], by["stationary"]
        cells += (f"<td>{e(_interval(rate))} <small>{e(str(rate.unit or ''))}</small></td>"
                  f"<td>{e(_interval(cross))}</td><td>{e(_interval(level))} <small>{e(str(level.status))}</small></td>"
                  f"<td>{e(str(rate.worse))}</td><td>{e(str(rate.collapse))}</td>")
        body.append(f"<tr>{cells}</tr>")
    head = "".join(f"<th>{e(c)}</th>" for c in arm_columns + ["metric"])
    head += ("<th>rate per generation</th><th>first generation 10 % worse than t = 1</th>"
             "<th>stationary level (last third)</th><th>worse</th><th>collapse definition</th>")
    legend = "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in definitions_used(profile).items())
    return ("<h2>Collapse profile</h2><p class='note'>Per configuration and metric, 95 % intervals over seeds "
            "(<code>madlab profile DIR</code> prints the same with the methods; <code>madlab compare DIR --by "
            "COLUMN</code> gives paired differences). Rate: OLS slope per generation (a ratio for multiplicative "
            "metrics), t interval; crossing: first generation the seed-mean curve is 10 % worse than at generation "
            "1, bootstrap over seeds (∞: not within the generations run); stationary: mean of the last third of "
            "the generations, with the flattening verdict of an equivalence test on its drift.</p>"
            f"<table class='grid'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p class='note'>Collapse definitions measured (Schaeffer et al. 2025, arXiv 2503.03150):</p>"
            f"<ul class='note'>{legend}</ul>")
