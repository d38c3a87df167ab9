"""The report's opening: what ran, and generation 1 vs the last generation beside real data.

A reader of a results folder first needs the setting (spec, schemes, λ values, sizes,
generations, seeds, scale) and then the outcome in numbers: for each run configuration (seeds
averaged) the headline metrics at generation 1 and at the last generation, with a *real vs
real* row per dataset: the same metrics for a second real sample, none of it in the reference
set (see ``Dataset.real_vs_real_set``), scored against the reference set, recorded by the loop once per run (``metadata.real_vs_real`` of generation 1's DONE
record). That row says what "good" is: a generation-1 precision of 0.6 means little until one
sees that real data scores 0.75.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from madlab.analysis.results import Results, has_text_runs
from madlab.metrics.registry import bounded, headline
from madlab.schema.schemes import display_order

#: metrics the summary table shows, in this order, when the folder has them (madlab.metrics.registry)
HEADLINE = headline()
#: the same for text runs (the ``tokens`` kind): Shumailov's perplexity on real text first, then the
#: feature-space metrics on the ``text-lm`` encoder, then lexical diversity (Guo et al. 2023)
TEXT_HEADLINE = headline(text=True)
#: metrics bounded to [0, 1]: their axes are fixed to it
BOUNDED = bounded()
#: generators that are closed-form "theory" models (MAD §3): shown before the neural ones
THEORY_GENERATORS = ("gaussian", "gmm")


def theory_rank(generators) -> int:
    """0 for Gaussian runs, 1 for GMM, 2 for anything else: the order slices and rows are shown in."""
    names = {str(g) for g in generators}
    for rank, name in enumerate(THEORY_GENERATORS):
        if names and names <= {name}:
            return rank
    return len(THEORY_GENERATORS)


def headline_metrics(results: Results, default: tuple[str, ...] = HEADLINE) -> tuple[str, ...]:
    """The headline metrics for this folder: :data:`TEXT_HEADLINE` when it holds text runs, else
    ``default`` (the summary's :data:`HEADLINE`; the metric panels pass their own order)."""
    return TEXT_HEADLINE if has_text_runs(results) else default


def reference_values(results: Results) -> pd.DataFrame:
    """Real-vs-real metrics per run (columns run_id, metric, value), from generation 1's DONE record."""
    rows = [{"run_id": run_id, "metric": metric, "value": float(value)}
            for run_id, (reference, _) in results.real_vs_real.items() for metric, value in reference.items()
            if isinstance(value, (int, float)) and np.isfinite(value)]
    return pd.DataFrame(rows, columns=["run_id", "metric", "value"])


def reference_shared(results: Results) -> int:
    """The most rows any run's real-vs-real sample shares with its reference set (0: none shares any;
    a finite dataset too small for two disjoint sets records ``metadata.real_vs_real_shared``)."""
    return max((shared for _, shared in results.real_vs_real.values()), default=0)


def reference_level(results: Results, metric: str, run_ids=None) -> float | None:
    """The mean real-vs-real value of ``metric`` over the given runs (all runs by default)."""
    ref = reference_values(results)
    ref = ref[ref["metric"] == metric]
    if run_ids is not None:
        ref = ref[ref["run_id"].isin(set(run_ids))]
    return float(ref["value"].mean()) if len(ref) else None


def _values(frame: pd.DataFrame, col: str) -> list:
    if col not in frame or frame[col].isna().all():
        return []
    return display_order(frame[col].dropna().unique().tolist(), col)


def _fmt(values) -> str:
    out = []
    for v in values:
        if isinstance(v, float) and v == int(v):
            v = int(v)
        out.append(f"{v:g}" if isinstance(v, float) else str(v))
    return ", ".join(out) if out else "—"


def what_ran(results: Results) -> list[tuple[str, str]]:
    """(label, value) rows of the setting: spec, models, schemes, λ, sizes, generations, seeds, scale."""
    runs, values = results.runs, results.values
    rows = [("spec", results.spec), ("scale", results.scale)]
    if results.table is None or runs.empty:
        return rows
    if "model" in runs:
        rows.append(("models", _fmt(_values(runs, "model"))))
    rows.append(("generators", _fmt(sorted(results.generators, key=lambda g: (theory_rank([g]), g)))))
    if "dataset" in runs:
        rows.append(("datasets", _fmt(_values(runs, "dataset"))))
    rows.append(("schemes", _fmt(_values(runs, "scheme"))))
    rows.append(("λ (sampling bias)", _fmt(_values(runs, "bias"))))
    for col, label in (("n_real", "n_real"), ("n_synthetic", "n_synthetic"), ("n_initial", "n_initial")):
        if col in runs and runs[col].notna().any():
            rows.append((label, _fmt(_values(runs, col))))
    if len(values):
        last = values.groupby("run_id")["generation"].max()
        rows.append(("generations", _fmt(sorted(last.unique().tolist()))))
    seeds = _values(runs, "seed")
    rows.append(("seeds", f"{len(seeds)} ({_fmt(seeds)})" if seeds else "—"))
    rows.append(("runs", str(len(runs))))
    return rows


def configuration_columns(results: Results) -> list[str]:
    """Columns that tell run configurations apart (every sweep axis, the seed excluded)."""
    cols = [c for c in ("model", "generator", "dataset") if c in results.runs and results.runs[c].nunique() > 1]
    cols = cols[:1] if "model" in cols else cols
    return cols + [c for c in results.axes if c not in cols]


def generation_table(results: Results, metrics=None) -> pd.DataFrame:
    """One row per run configuration: mean over seeds of each headline metric (default
    :func:`headline_metrics`) at generation 1 and at the configuration's last generation, then one
    "real vs real" row per dataset (or model).

    Columns: the configuration columns, ``seeds``, ``last`` (generation), then ``<metric> @1`` and
    ``<metric> @last`` for each metric, and their standard deviations over seeds ``<metric> @1 sd``,
    ``<metric> @last sd``. Theory models come first.
    """
    values = results.values
    if not len(values):
        return pd.DataFrame()
    present = set(values["metric"])
    metrics = [m for m in (metrics or headline_metrics(results)) if m in present]
    config_cols = configuration_columns(results)
    keys = config_cols or ["_all"]
    frame_runs = results.runs.set_index("run_id").reset_index()
    if not config_cols:
        frame_runs["_all"] = "all runs"
    table = _configuration_rows(values, frame_runs, keys, metrics)
    positions = {c: {v: i for i, v in enumerate(_values(table, c))} for c in keys if c != "_all"}
    table["_order"] = [tuple(positions[c].get(row[c], -1) for c in positions) for row in table.to_dict("records")]
    table = table.sort_values(["_rank", "_order"], kind="stable").drop(columns=["_order"])
    ref_rows = _reference_rows(results, frame_runs, keys[0], metrics)
    if ref_rows:
        table = pd.concat([table, pd.DataFrame(ref_rows).sort_values("_rank", kind="stable")], ignore_index=True)
    return table.drop(columns=["_rank"]).reset_index(drop=True)


def _configuration_rows(values: pd.DataFrame, frame_runs: pd.DataFrame, keys: list[str], metrics) -> pd.DataFrame:
    """One row per configuration: seeds, last generation, theory rank, each metric at 1 and at the last."""
    last = values.groupby("run_id")["generation"].max()
    picked = values[values["metric"].isin(metrics)].copy()
    picked["_last"] = picked["run_id"].map(last)
    first = picked[picked["generation"] == 1]
    final = picked[picked["generation"] == picked["_last"]]
    rows = []
    for key, group in frame_runs.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ids = set(group["run_id"])
        row = dict(zip(keys, key))
        row["seeds"] = int(group["seed"].nunique()) if "seed" in group else 1
        row["last"] = int(last[last.index.isin(ids)].max()) if last.index.isin(ids).any() else 0
        row["_rank"] = theory_rank(group["generator"].astype(str)) if "generator" in group else 2
        for m in metrics:
            a = first[(first["metric"] == m) & first["run_id"].isin(ids)]["value"]
            b = final[(final["metric"] == m) & final["run_id"].isin(ids)]["value"]
            row[f"{m} @1"] = float(a.mean()) if len(a) else np.nan
            row[f"{m} @last"] = float(b.mean()) if len(b) else np.nan
            row[f"{m} @1 sd"] = float(a.std(ddof=1)) if len(a) > 1 else np.nan  # seed spread beside each mean
            row[f"{m} @last sd"] = float(b.std(ddof=1)) if len(b) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _reference_rows(results: Results, frame_runs: pd.DataFrame, first_key: str, metrics) -> list[dict]:
    """The "real vs real" row of each dataset (or model), the same value at 1 and at the last generation."""
    ref = reference_values(results)
    rows = []
    if not len(ref):
        return rows
    by = next((c for c in ("model", "dataset") if c in frame_runs), None)
    groups = frame_runs.groupby(by, sort=False) if by else [("all", frame_runs)]
    for label, group in groups:
        mine = ref[ref["run_id"].isin(set(group["run_id"]))]
        if mine.empty:
            continue
        row = {first_key: f"real vs real ({label})", "seeds": int(mine["run_id"].nunique()), "last": np.nan,
               "_rank": theory_rank(group["generator"].astype(str)) if "generator" in group else 2}
        for m in metrics:
            v = mine[mine["metric"] == m]["value"]
            row[f"{m} @1"] = row[f"{m} @last"] = float(v.mean()) if len(v) else np.nan
        rows.append(row)
    return rows
