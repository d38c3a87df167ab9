"""`madlab report DIR`: the MAD figures of a results folder, and a self-contained index page.

    make_report(DIR) -> [paths written]

writes ``DIR/figures/<panel>.png`` and ``.pdf`` for every panel the folder has data for and
``DIR/figures/index.html`` (images embedded, so the page can be mailed or copied off a
cluster on its own). Which panels a folder should have comes from the MAD figure its spec
reproduces (:mod:`madlab.report.catalogue`) plus the generic ones; a panel whose data are
not there yet (a sweep still running, a metric not computed) is listed as missing with the
reason, never silently dropped. Re-running on a growing folder is cheap and safe.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from madlab.analysis.results import Results, has_text_runs, open_results
from madlab.core.errors import MadlabError
from madlab.core.files import atomic_write_bytes, cache_root
from madlab.metrics.registry import headline
from madlab.report import text_panels
from madlab.report.catalogue import CATALOGUE, MadFigure, lookup
from madlab.report.plots import (DPI, Missing, axis_label, ess_panels, final_vs_total_panel, image_grid_panel,
                                 is_image_run, metrics_panel, plot_roles, representative_runs, scatter_panel, slug,
                                 theory_panel, tsne_panel)
from madlab.report.profile_section import profile_html
from madlab.report.summary import generation_table, headline_metrics, reference_shared, theory_rank, what_ran
from madlab.store.storage import (BATCHES, CONFIG, DONE, ESS_CURVE, ESS_TABLE, FAILED, RUN_INFO, RUNS, SAMPLES, TABLE,
                                  TOKENIZER, Location)

__all__ = ["make_report", "open_results", "Results", "CATALOGUE", "MadFigure"]


@dataclass
class Panel:
    key: str
    title: str
    paths: list[str] | None = None      # png, pdf
    missing: str | None = None          # why it could not be drawn


#: what the report reads from a results location (never checkpoints or feature caches)
REPORT_INPUTS = (TABLE, ESS_TABLE, ESS_CURVE, RUN_INFO, "spec.yaml", f"{RUNS}/*/{CONFIG}", f"{RUNS}/*/{FAILED}",
                 f"{RUNS}/*/gen-*/{DONE}", f"{RUNS}/*/gen-*/{SAMPLES}", f"{RUNS}/*/{TOKENIZER}",
                 f"{BATCHES}/*/members.json", f"{BATCHES}/*/gen-*.npz")
#: files that never change once written (a generation is immutable after its DONE marker)
_IMMUTABLE = (CONFIG, DONE, SAMPLES, "members.json")


def make_report(results_dir: str, local_dir: str | None = None) -> list[str]:
    """Draw every panel of a results folder; returns the paths written (PNGs, PDFs, index.html).

    ``results_dir`` may be an object-store URI (``s3://…``, ``gs://…``, anything fsspec reads):
    the report's inputs (tables, run records, samples; not checkpoints) are mirrored into
    ``local_dir`` (default ``$MADLAB_CACHE/reports/<location>``), drawn there, and the figures
    are uploaded to ``results_dir/figures``. Raises MadlabError (one line) when ``results_dir``
    is not a results folder.
    """
    location = Location(results_dir)
    if not location.local:
        return _report_remote(location, local_dir)
    return _report_local(results_dir)


def _report_remote(location, local_dir: str | None) -> list[str]:

    if not any(location.exists(name) for name in (TABLE, ESS_TABLE, RUN_INFO)):
        raise MadlabError(f"{location.uri}: not a madlab results folder (no metrics.parquet, ess.parquet or run.json)")
    if local_dir is None:
        local_dir = cache_root() / "reports" / re.sub(r"[^A-Za-z0-9._-]+", "_", location.uri).strip("_")
    mirror = Path(local_dir)
    wanted = {rel for pattern in REPORT_INPUTS for rel in location.glob(pattern)}
    for rel in sorted(wanted):
        target = mirror / rel
        if target.is_file() and target.name in _IMMUTABLE:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, location.read_bytes(rel))
    for stale in (mirror / RUNS).glob(f"*/{FAILED}") if (mirror / RUNS).is_dir() else []:
        if str(stale.relative_to(mirror)) not in wanted:  # the run was retried since
            stale.unlink()
    written = _report_local(str(mirror))
    uploads = {}
    for path in written:
        rel = str(Path(path).relative_to(mirror))
        uploads[rel] = Path(path).read_bytes()
    location.write_many(uploads)
    return [location.join(rel) for rel in uploads]


def _report_local(results_dir: str) -> list[str]:
    results = open_results(results_dir)
    figure = lookup(results.name)
    out_dir = results.dir / "figures"
    out_dir.mkdir(exist_ok=True)
    panels = _draw_all(results, figure, out_dir)
    written = [p for panel in panels for p in (panel.paths or [])]
    _remove_stale(out_dir, written)
    index = out_dir / "index.html"
    atomic_write_bytes(index, _index_html(results, figure, panels).encode("utf-8"))
    return written + [str(index)]


#: per-generation rows of a curated loop (madlab.engine.curation_stage), drawn in their own panel
CURATION_METRICS = ("reward_before", "reward_after", "acceptance_rate", "candidates")

#: sweep slices (combinations of axes beyond colour and line style) drawn as separate figures
MAX_SLICES = 12


def _slices(results: Results, hue: str) -> tuple[list[Results], list[str]]:
    """One view per combination of the sweep axes that are not colour/style; (drawn, skipped)."""
    rest = plot_roles(results, hue)["rows"]
    if not rest:
        return [results], []
    views = []
    for values, group in results.runs.groupby(rest, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        label = ", ".join(axis_label(c, v) for c, v in zip(rest, values))
        rank = theory_rank(group["generator"].astype(str)) if "generator" in group else len(views)
        views.append((rank, results.subset(group["run_id"], label)))
    views = [v for _, v in sorted(views, key=lambda rv: rv[0])]  # theory models first (stable)
    return views[:MAX_SLICES], [v.label for v in views[MAX_SLICES:]]


def _draw_all(results: Results, figure: MadFigure | None, out_dir: Path) -> list[Panel]:
    """Every panel this folder calls for, drawn and saved (a missing required one says why)."""
    wanted = set(figure.panels) if figure else set()
    plans = _table_plans(results, figure, wanted) if results.table is not None else []
    if results.ess is not None or "ess" in wanted:
        plans.append(("ess", "Effective sample size heat maps", lambda: ess_panels(results), True))
    return _draw_plans(results, plans, out_dir)


def _table_plans(results: Results, figure: MadFigure | None, wanted: set[str]) -> list[tuple]:
    """(key, title, draw, required) of the panels a metrics table calls for, slice by slice."""
    plans = []
    expected = list(figure.metrics) if figure else []
    hue = figure.hue if figure else "bias"
    for m in expected:
        if m not in results.metrics:
            plans.append((f"metric_{m}", f"{m} vs generation", lambda m=m: _raise(f"metric {m!r} not in the table"), True))
    views, skipped = _slices(results, hue)
    if skipped:
        plans.append(("slices", "Further sweep slices", lambda: _raise(
            f"only the first {MAX_SLICES} sweep slices get per-slice panels; not drawn: {'; '.join(skipped)}"), True))
    for view in views:
        plans += _view_plans(view, expected, hue, wanted, single=len(views) == 1)
    if "final_vs_total" in wanted:
        plans.append(("final_vs_total", "Limit W2 vs total n", lambda: final_vs_total_panel(results), True))
    return plans


def _view_plans(view: Results, expected: list[str], hue: str, wanted: set[str], single: bool) -> list[tuple]:
    """The panels of one sweep slice: metrics, curation, theory, then text or samples and t-SNE."""
    kinds = _sample_kinds(view)  # per slice: one sweep may mix image and 2-D runs (the quickstart does)
    image = True in kinds
    tag = f"_{slug(view.label)}" if view.label else ""
    title = f" [{view.label}]" if view.label else ""
    mine = view.metrics
    headline = [m for m in _headline(view) if m in mine and m not in expected]
    order = [m for m in expected if m in mine] + headline + [m for m in mine if m not in expected + headline]
    plans = [(f"metrics{tag}", "Metrics vs generation" + title,
              lambda v=view, o=order: metrics_panel(v, o, hue) if o else _raise("no metric values yet"), True)]
    curated = [m for m in CURATION_METRICS if m in mine]
    if curated or "curation" in wanted:
        plans.append((f"curation{tag}", "Curation per generation" + title,
                      lambda v=view, c=curated: metrics_panel(v, c, hue) if c else
                      _raise("no curation rows (candidates, kept, reward_before, ...) in the table"),
                      "curation" in wanted))
    gaussian_runs = "generator" in view.runs and (view.runs["generator"].astype(str) == "gaussian").any()
    if "trace_cov" in mine or "theory" in wanted:  # required where the closed form applies
        plans.append((f"theory{tag}", "Gaussian loop vs closed form" + title, lambda v=view: theory_panel(v),
                      "theory" in wanted and (gaussian_runs or single)))
    if has_text_runs(view):  # the tokens kind: text excerpts and rank-frequency instead of pictures
        plans.append((f"text{tag}", "Generated text per generation" + title,
                      lambda v=view: text_panels.text_excerpts_panel(v), True))
        plans.append((f"rankfreq{tag}", "Token rank-frequency per generation" + title,
                      lambda v=view: text_panels.rank_frequency_panel(v), True))
        if "model_gini_simpson" in mine:
            plans.append((f"ngram_theory{tag}", "Unigram loop vs closed form" + title,
                          lambda v=view: text_panels.ngram_theory_panel(v), False))
        return plans
    plans.append((f"samples{tag}", "Samples per generation" + title,
                  lambda v=view, im=image: image_grid_panel(v) if im else scatter_panel(v), True))
    if kinds == {True, False}:  # the 2-D runs of a mixed slice
        plans.append((f"points{tag}", "2-D samples per generation" + title, lambda v=view: scatter_panel(v), True))
    if "tsne" in wanted or image:
        plans.append((f"tsne{tag}", "t-SNE of samples per generation" + title, lambda v=view: tsne_panel(v),
                      "tsne" in wanted))
    return plans


def _draw_plans(results: Results, plans: list[tuple], out_dir: Path) -> list[Panel]:
    panels = []
    prefix = slug(results.name)
    for key, title, draw, required in plans:
        try:
            drawn = draw()
        except Missing as why:
            if required:
                panels.append(Panel(key, title, missing=str(why)))
            continue
        items = drawn.items() if isinstance(drawn, dict) else [(None, drawn)]
        for sub, fig in items:
            name = f"{prefix}_{key}" + (f"_{sub}" if sub else "")
            panels.append(Panel(name, title + (f" ({sub})" if sub else ""), paths=_save(fig, out_dir / name)))
    return panels


def _sample_kinds(results: Results) -> set[bool]:
    """{True} image runs only, {False} 2-D only, both, or empty (no samples yet)."""
    return {is_image_run(results, run_id) for _, run_id in representative_runs(results)}


def _raise(message: str):
    raise Missing(message)


def _save(fig, stem: Path) -> list[str]:
    import matplotlib.pyplot as plt  # after plots.pyplot() chose the Agg backend

    paths = []
    for ext, kwargs in (("png", {"dpi": DPI}), ("pdf", {})):
        path = stem.parent / f"{stem.name}.{ext}"
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches="tight", **kwargs)
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(str(path))
    plt.close(fig)
    return paths


def _remove_stale(out_dir: Path, keep: list[str]) -> None:
    keep_set = {Path(p).name for p in keep}
    for old in list(out_dir.glob("*.png")) + list(out_dir.glob("*.pdf")):
        if old.name not in keep_set:
            old.unlink(missing_ok=True)


def _summary_html(results: Results, figure: MadFigure | None) -> str:
    """The opening: what ran, then generation 1 vs the last generation per configuration."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in what_ran(results))
    out = [f"<section id='summary'><h2>What ran</h2><table class='kv'>{rows}</table>"]
    table = generation_table(results, figure.metrics + tuple(m for m in _headline(results) if m not in figure.metrics)
                             if figure else None)
    if len(table):
        metric_cols = [c[:-3] for c in table.columns if c.endswith(" @1")]
        keys = [c for c in table.columns if c not in ("seeds", "last") and not c.endswith((" @1", " @last", " sd"))]
        head1 = "".join(f"<th rowspan=2>{e(k)}</th>" for k in keys) + "<th rowspan=2>seeds</th><th rowspan=2>last t</th>"
        head1 += "".join(f"<th colspan=2>{e(m)}</th>" for m in metric_cols)
        head2 = "".join("<th>t = 1</th><th>last</th>" for _ in metric_cols)
        body = []
        for row in table.to_dict("records"):
            reference = str(row[keys[0]]).startswith("real vs real")
            if reference:
                cells = f"<td colspan={len(keys) + 2}>{e(str(row[keys[0]]))}</td>"
            else:
                cells = "".join(f"<td>{e(_cell(row[k]))}</td>" for k in keys)
                cells += f"<td>{row['seeds']}</td><td>{int(row['last'])}</td>"
            for m in metric_cols:
                if reference:
                    cells += f"<td colspan=2 class='ref'>{e(_num(row[m + ' @1']))}</td>"
                else:
                    cells += "".join(f"<td>{e(_num(row[f'{m} @{t}']))}{e(_spread(row.get(f'{m} @{t} sd')))}</td>"
                                     for t in ("1", "last"))
            body.append(f"<tr{' class=ref' if reference else ''}>{cells}</tr>")
        shared = reference_shared(results)
        shared = (f" <b>The dataset is too small for two disjoint sets: up to {shared} rows of that sample are "
                  f"also in the reference set, so the row is optimistic.</b>" if shared else "")
        out.append("<h2>Generation 1 vs last generation</h2><p class='note'>Mean ± standard deviation over seeds "
                   "per configuration. "
                   "<i>real vs real</i>: a second sample of real data, none of it in the reference set, scored "
                   "against that set (recorded once per run at generation 1), i.e. what a perfect model scores."
                   f"{shared}</p>"
                   f"<table class='grid'><thead><tr>{head1}</tr><tr>{head2}</tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table>")
    out.append(profile_html(results, [c[:-3] for c in table.columns if c.endswith(" @1")] if len(table) else []))
    out.append("</section>")
    return "".join(out)


#: the headline panels: the summary's headline but trace_cov, which the theory panel draws
_HEADLINE = headline(panels=True)


def _headline(results: Results) -> tuple[str, ...]:
    """Metrics drawn first and summarised: text runs have their own (summary.TEXT_HEADLINE)."""
    return headline_metrics(results, _HEADLINE)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _spread(sd) -> str:
    return "" if sd is None or not isinstance(sd, float) or not math.isfinite(sd) else f" ± {_num(sd)}"


def _num(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _index_html(results: Results, figure: MadFigure | None, panels: list[Panel]) -> str:
    e = html.escape
    meta = [("results folder", str(results.dir)), ("spec", results.spec), ("command", results.command or "unknown"),
            ("scale", results.scale), ("generators", ", ".join(results.generators) or "unknown"),
            ("metric extractor", ", ".join(results.extractors) or ("none (low-dimensional metrics)" if len(results.values)
                                                                   else "unknown (no generation yet)")),
            ("run date", results.date), ("madlab version", str(results.info.get("madlab_version", "unknown")))]
    if results.table is not None:
        with_data = results.values["run_id"].nunique()
        listed = len(results.info.get("runs") or []) or len(results.runs)
        top = int(results.values["generation"].max()) if len(results.values) else 0
        meta.append(("runs", f"{with_data} of {listed} have published generations (up to generation {top}); "
                             f"{len(results.failures)} failed"))
    meta_rows = "".join(f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in meta)
    head = f"<h1>{e(results.name)}</h1>"
    if figure:
        head += f"<p><b>{'MAD ' if figure.figures.startswith('Fig') else ''}{e(figure.figures)}</b>: {e(figure.title)}<br>"
        head += f"{'Paper' if figure.figures.startswith('Fig') else 'MAD'}'s claim: {e(figure.claim)}</p>"
        if figure.guide:
            head += f"<h2>What you are looking at</h2><p class='guide'>{e(figure.guide)}</p>"
    body = []
    for p in panels:
        if p.paths:
            png = Path(p.paths[0])
            data = base64.b64encode(png.read_bytes()).decode()
            files = ", ".join(f"<code>{e(Path(x).name)}</code>" for x in p.paths)
            body.append(f'<section><h2>{e(p.title)}</h2>'
                        f'<img alt="{e(p.title)}" src="data:image/png;base64,{data}">'
                        f'<p class="files">files: {files}</p></section>')
    missing = [p for p in panels if p.missing]
    if missing:
        items = "".join(f"<li><b>{e(p.title)}</b> ({e(p.key)}): missing — {e(p.missing)}</li>" for p in missing)
        body.append(f"<section><h2>Missing figures</h2><ul>{items}</ul></section>")
    if results.failures:
        items = "".join(f"<li><code>{e(r)}</code>: {e(err)}</li>" for r, err in results.failures)
        body.append(f"<section><h2>Failed runs</h2><ul>{items}</ul></section>")
    summary = _summary_html(results, figure) if results.table is not None else ""
    provenance = f"<section id='provenance'><h2>Provenance</h2><table class='kv'>{meta_rows}</table></section>"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}img{max-width:100%}"
             "th{text-align:left;padding-right:1em}section{margin:2em 0}table.grid{border-collapse:collapse;font-size:90%}"
             "table.grid td,table.grid th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "table.grid th{text-align:center;background:#f3f3f3}tr.ref td{background:#f7f7e8;font-style:italic}"
             ".note,.files{color:#555;font-size:90%}.guide{max-width:60em;line-height:1.4}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>madlab report: "
            f"{e(results.name)}</title><style>{style}</style></head><body>"
            f"{head}{summary}{''.join(body)}{provenance}"
            f"<p><small>report written {e(stamp)}</small></p></body></html>")
