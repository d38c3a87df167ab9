"""The panels: each function draws one figure from a :class:`Results` and returns it, or
raises :class:`Missing` naming what the folder lacks for it (the index lists it as missing).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from madlab.analysis.results import Results
from madlab.core.samples import Samples
from madlab.datasets import get_dataset_class
from madlab.engine.theory import CLOSED_FORM_SCHEMES, expected_moments
from madlab.report.summary import BOUNDED, reference_level
from madlab.schema.schemes import display_order

_MAX_GROUPS = 6      # sample panels: representative runs shown
_MAX_GENERATIONS = 6  # sample panels: generations shown per run
_BOOT = 200           # bootstrap resamples of the seed confidence bands
DPI = 90             # the PNGs' resolution (madlab.report saves at this dpi)


class Missing(Exception):
    """A panel cannot be drawn from this folder; the message says why."""


def pyplot():
    import matplotlib  # after pyplot() chose the Agg backend (seaborn imports pyplot)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # after pyplot() chose the Agg backend (seaborn imports pyplot)

    return plt


def axis_label(col: str, value, named: bool = True) -> str:
    if col == "bias":
        return f"λ={float(value):g}" if named else f"{float(value):g}"
    if isinstance(value, float) and value == int(value):
        value = int(value)
    return f"{col}={value}" if named else str(value)


#: MAD's three loops first, in the paper's order; line style by scheme in every panel
SCHEME_DASHES = {"fully-synthetic": "", "fixed-real": (5, 2), "fresh-real": (1.5, 1.5),
                 "accumulate": (6, 2, 1.5, 2), "accumulate-subsample": (3, 1, 1, 1)}
#: the real-vs-real reference level, drawn the same way in every panel
REFERENCE_STYLE = dict(color="0.3", lw=1.0, ls=(0, (1, 2)), zorder=0)


def palette_for(labels: list[str]) -> dict[str, tuple]:
    """One colour per hue label, in order: the same mapping in the metric and the theory panels."""
    import seaborn as sns  # after pyplot() chose the Agg backend (seaborn imports pyplot)

    colours = sns.color_palette("colorblind", max(len(labels), 1))
    return dict(zip(labels, colours))


def dashes_for(labels: list[str]) -> dict[str, object]:
    """Line style per scheme label (unknown labels cycle through the remaining styles)."""
    spare = [(4, 1, 1, 1, 1, 1), (2, 2, 6, 2), (8, 2)]
    return {lab: SCHEME_DASHES.get(lab, spare[i % len(spare)]) for i, lab in enumerate(labels)}


def integer_generations(ax) -> None:

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def seed_count(results: Results) -> int:
    """Seeds per configuration (the most any configuration has): the N of "mean ± band over N seeds"."""
    runs = results.runs
    if "seed" not in runs or runs.empty:
        return 1
    axes = [a for a in results.axes if a in runs]
    return int(runs.groupby(axes)["seed"].nunique().max()) if axes else int(runs["seed"].nunique())


def band_note(n_seeds: int) -> str:
    return f"mean ± 95% band over {n_seeds} seeds" if n_seeds > 1 else "one seed (no band)"


def _series(frame: pd.DataFrame, col: str) -> pd.Series:
    """A categorical label column, ordered (λ descending, schemes as MAD, numbers ascending)."""
    values = frame[col]
    uniq = values.drop_duplicates().tolist()
    order = display_order(uniq, col)
    labels = [axis_label(col, v, named=False) for v in order]
    mapping = dict(zip(map(str, order), labels))
    return pd.Categorical(values.astype(str).map(mapping), categories=list(dict.fromkeys(labels)), ordered=True)


def _legend(col: str) -> str:
    return {"bias": "λ"}.get(col, col)


def plot_roles(results: Results, hue: str = "bias") -> dict[str, str | None]:
    """hue / style / row for the metric panels: λ (or the figure's own axis) by colour,
    scheme by line style in every panel (where the scheme is the only axis it takes the colour
    too), every other sweep axis by facet row."""
    axes = list(results.axes)
    if hue not in axes:
        hue = "bias" if "bias" in axes else (axes[0] if axes else None)
    style = "scheme" if "scheme" in axes else None
    rest = [a for a in axes if a not in (hue, style)]
    return {"hue": hue, "style": style, "rows": rest}


def _tidy(results: Results, metrics: list[str], roles: dict) -> pd.DataFrame:
    data = results.values[results.values["metric"].isin(metrics)].copy()
    if data.empty:
        raise Missing(f"no values for {', '.join(metrics)} yet")
    for key in ("hue", "style"):
        if roles[key]:
            data[_legend(roles[key])] = _series(data, roles[key])
    if roles["rows"]:
        data["_row"] = data[roles["rows"]].astype(str).apply(
            lambda r: ", ".join(axis_label(c, v) for c, v in zip(roles["rows"], r)), axis=1)
    return data


def metrics_panel(results: Results, metrics: list[str], hue: str = "bias"):
    """Metric vs generation (MAD Figs. 4, 8, 10, 13): mean over seeds, a 95% bootstrap band when
    there are several seeds, bounded metrics on [0, 1], the real-vs-real level as a dotted line."""
    import seaborn as sns  # after pyplot() chose the Agg backend (seaborn imports pyplot)

    pyplot()
    roles = plot_roles(results, hue)
    data = _tidy(results, metrics, roles)
    present = [m for m in metrics if m in set(data["metric"])]
    n_rows = data["_row"].nunique() if roles["rows"] else 1
    n_seeds = seed_count(results)
    hue_col = _legend(roles["hue"]) if roles["hue"] else None
    style_col = _legend(roles["style"]) if roles["style"] else None
    grid = sns.relplot(
        data=data, kind="line", x="generation", y="value", col="metric", col_order=present,
        row="_row" if roles["rows"] else None, col_wrap=None if roles["rows"] or len(present) <= 5 else 5,
        hue=hue_col, style=style_col,
        palette=palette_for(list(data[hue_col].cat.categories)) if hue_col else None,
        dashes=dashes_for(list(data[style_col].cat.categories)) if style_col else True,
        errorbar=("ci", 95) if n_seeds > 1 else None, n_boot=_BOOT, seed=0, markers=True,
        height=2.6 if n_rows > 1 else 3.0, aspect=1.15, facet_kws={"sharey": False, "sharex": True},
    )
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.set_ylabels("")
    drew_reference = False
    for key, ax in grid.axes_dict.items():
        row, metric = key if isinstance(key, tuple) else (None, key)
        integer_generations(ax)
        if metric in BOUNDED:
            ax.set_ylim(-0.02, 1.02)
        ids = data[data["_row"] == row]["run_id"].unique() if row is not None else data["run_id"].unique()
        level = reference_level(results, metric, ids)
        if level is not None:
            ax.axhline(level, **REFERENCE_STYLE)
            drew_reference = True
    reference = "; dotted grey: real vs real" if drew_reference else ""
    grid.figure.suptitle(f"{results.title}: metrics over generations ({band_note(n_seeds)}{reference})",
                         y=1.02, fontsize=10)
    return grid.figure


def theory_panel(results: Results):
    """Gaussian generator: measured trace of the fitted covariance and mean shift beside their
    exact expectations (madlab.engine.theory.expected_moments; E tr Σ_t = λ^(t-1) d fully-synthetic)."""
    plt = pyplot()
    vals = results.values
    if "generator" in vals and not (vals["generator"].astype(str) == "gaussian").any():
        raise Missing("no gaussian-generator runs (the closed form is for the Gaussian model)")
    gauss = vals[vals["metric"].isin(["trace_cov", "mean_shift"])]
    if gauss.empty:
        raise Missing("no trace_cov / mean_shift values yet")
    roles = plot_roles(results)
    hue, style = roles["hue"], roles["style"]
    keys = list(dict.fromkeys(k for k in [hue, style, *roles["rows"]] if k))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    hue_labels = [axis_label(hue, v, named=False) for v in display_order(gauss[hue].drop_duplicates().tolist(), hue)] if hue else []
    colours = palette_for(hue_labels)
    style_labels = ([axis_label(style, v, named=False) for v in display_order(gauss[style].drop_duplicates().tolist(), style)]
                    if style else [])
    dashes = dashes_for(style_labels)
    n_seeds = seed_count(results)
    drawn_theory = False
    for label, group in _groups(gauss, results, keys):
        first = group.iloc[0]
        colour = colours.get(axis_label(hue, first[hue], named=False), "tab:blue") if hue else "tab:blue"
        dash = dashes.get(axis_label(style, first[style], named=False), "") if style else ""
        drawn_theory |= _theory_lines(axes, results, group, label, colour, dash)
    if not drawn_theory:
        plt.close(fig)
        raise Missing("no run with a closed form (gaussian dataset, scheme fully-synthetic/fixed-real/fresh-real, "
                      "memory 1, no accumulated synthetic sets, config.json present)")
    axes[0].set(title="trace of fitted Σ (broad pale line: exact E)", xlabel="generation", yscale="log")
    axes[1].set(title="|mean − true mean| (pale: √E|μ|², an upper bound)", xlabel="generation")
    for ax in axes:
        integer_generations(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False)
    fig.suptitle(f"{results.title}: Gaussian loop vs closed form (markers: measured, {band_note(n_seeds)})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _theory_lines(axes, results: Results, group: pd.DataFrame, label: str, colour, dash) -> bool:
    """One configuration's measured trace_cov and mean_shift (mean, 95% band over seeds) and, where it
    has one, its closed form as a broad pale line; True when the closed form was drawn."""
    for ax, metric in zip(axes, ["trace_cov", "mean_shift"]):
        rows = group[group["metric"] == metric]
        if rows.empty:
            continue
        stats = rows.groupby("generation")["value"].agg(["mean", "std", "count"])
        line, = ax.plot(stats.index, stats["mean"], "o-", ms=3, color=colour, label=label)
        if dash:
            line.set_dashes(dash)
        if (stats["count"] > 1).any():
            half = 1.96 * stats["std"].fillna(0) / np.sqrt(stats["count"])
            ax.fill_between(stats.index, stats["mean"] - half, stats["mean"] + half, color=colour, alpha=0.2)
    cfg = results.config(group["run_id"].iloc[0])
    theory = _theory_for(cfg, int(group["generation"].max()), expected_moments)
    if theory is None:
        return False
    axes[0].plot(theory["generation"], theory["trace_cov"], "-", color=colour, lw=4, alpha=0.25)
    axes[1].plot(theory["generation"], np.sqrt(theory["mean_sq"]), "-", color=colour, lw=4, alpha=0.25)
    return True


def _groups(frame: pd.DataFrame, results: Results, keys: list[str]):
    if not keys:
        yield "all runs", frame
        return
    for values, group in frame.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield ", ".join(axis_label(k, v) for k, v in zip(keys, values)), group


def _theory_for(cfg: dict, generations: int, expected_moments):
    loop, dataset = cfg.get("loop") or {}, cfg.get("dataset") or {}
    if dataset.get("name") != "gaussian" or (cfg.get("generator") or {}).get("name") != "gaussian":
        return None
    if loop.get("memory", 1) != 1 or loop.get("accumulate_synthetic"):
        return None
    if loop.get("scheme") not in CLOSED_FORM_SCHEMES:
        return None
    return expected_moments(generations, scheme=loop["scheme"], n_real=loop["n_real"],
                            n_synthetic=loop["n_synthetic"], bias=loop.get("bias", 1.0),
                            dim=dataset.get("dim", 2), n_initial=loop.get("n_initial"))


def is_image_run(results: Results, run_id: str) -> bool | None:
    """Whether a run's samples are images (None: no published samples yet)."""
    gens = results.generations(run_id)
    return results.samples(run_id, gens[0]).x.ndim == 4 if gens else None


def representative_runs(results: Results, limit: int = _MAX_GROUPS, image: bool | None = None) -> list[tuple[str, str]]:
    """(label, run_id) of one run (lowest seed) per combination of the sweep axes, with samples
    (only image runs, or only 2-D runs, when ``image`` says so)."""
    runs = results.runs
    if runs.empty:
        return []
    axes = results.axes
    runs = runs[[bool(results.generations(r)) for r in runs["run_id"]]]
    if "seed" in runs:
        runs = runs.sort_values("seed", kind="stable")
    if axes:
        runs = runs.drop_duplicates(axes)
        positions = {a: {v: i for i, v in enumerate(display_order(runs[a].drop_duplicates().tolist(), a))} for a in axes}
        order = sorted(range(len(runs)), key=lambda i: tuple(positions[a].get(runs[a].iloc[i], -1) for a in axes))
        runs = runs.iloc[order]
    out = []
    for row in runs.itertuples(index=False):
        if len(out) == limit:
            break
        if image is not None and is_image_run(results, row.run_id) != image:
            continue  # checked on the candidates only: it loads the run's first samples
        label = ", ".join(axis_label(a, getattr(row, a)) for a in axes)
        if not label:
            label = ", ".join(axis_label(a, getattr(row, a)) for a in ("bias", "scheme") if hasattr(row, a)) or "run"
        out.append((label, row.run_id))
    return out


def pick_generations(gens: list[int], k: int = _MAX_GENERATIONS) -> list[int]:
    if len(gens) <= k:
        return gens
    idx = np.unique(np.linspace(0, len(gens) - 1, k).round().astype(int))
    return [gens[i] for i in idx]


def _real_reference(results: Results, run_id: str, n: int, images: bool = False):
    """Real samples to show beside the generated ones, or None.

    Only from datasets at hand: analytic ones, or image datasets whose files are already
    here (nothing is downloaded: a dataset that cannot be opened is simply not shown).
    """
    cfg = results.config(run_id)
    ds = cfg.get("dataset") or {}
    try:
        cls = get_dataset_class(ds["name"])
        if (cls.kind == "image") != images:
            return None
        params = {k: v for k, v in ds.items() if k != "name"}
        if params.get("download"):
            params["download"] = False
        dataset = cls(cls.Params.model_validate(params))
        real = dataset.eval_set(n, seed=int(cfg.get("seed", 0)))
        return real if images else real.x
    except Exception:  # a plugin dataset that cannot be rebuilt here: plot without the reference
        return None


def _sample_runs(results: Results, image: bool) -> list[tuple[str, str]]:
    """The representative runs whose samples are images (or vectors), or Missing saying why none."""
    if not representative_runs(results, limit=1):
        raise Missing("no published generation with samples yet")
    reps = representative_runs(results, image=image)
    if not reps:
        raise Missing("samples are images (see the sample-grid panel)" if not image else
                      "samples are vectors (see the scatter panel)")
    return reps


def scatter_panel(results: Results):
    """2-D scatter of samples per generation (MAD Figs. 14, 17); first two coordinates if d > 2."""
    plt = pyplot()
    reps = _sample_runs(results, image=False)
    first = results.samples(reps[0][1], results.generations(reps[0][1])[0])
    cols = max(len(pick_generations(results.generations(r))) for _, r in reps) + 1
    fig, axes = plt.subplots(len(reps), cols, figsize=(1.9 * cols, 1.9 * len(reps) + 0.4), squeeze=False)
    for i, (label, run_id) in enumerate(reps):
        gens = pick_generations(results.generations(run_id))
        real = _real_reference(results, run_id, 1000)
        clouds = [results.samples(run_id, g).x[:1000] for g in gens]
        ref = real if real is not None else clouds[0]
        lo, hi = np.percentile(ref[:, :2], [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                if real is not None:
                    ax.scatter(real[:, 0], real[:, 1], s=1, c="0.3", alpha=0.5, rasterized=True)
                    ax.set_title("real", fontsize=7)
                ax.set_ylabel(label, fontsize=7)
            elif j - 1 < len(gens):
                x = clouds[j - 1]
                ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:blue", alpha=0.5, rasterized=True)
                ax.set_title(f"t={gens[j - 1]}", fontsize=7)
            else:
                ax.axis("off")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
    d = first.x.shape[1]
    note = "" if d == 2 else f" (first 2 of {d} coordinates)"
    fig.suptitle(f"{results.title}: samples per generation{note}", fontsize=9)
    fig.tight_layout()
    return fig


def _tile(images: np.ndarray, ncol: int) -> np.ndarray:
    """(n, C, H, W) in [-1, 1] -> one (H', W', 3) image in [0, 1]."""
    x = (np.clip(images, -1, 1) + 1) / 2
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n, c, h, w = x.shape
    rows = math.ceil(n / ncol)
    canvas = np.ones((rows * (h + 1) + 1, ncol * (w + 1) + 1, 3))
    for k in range(n):
        r, q = divmod(k, ncol)
        canvas[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = x[k].transpose(1, 2, 0)
    return canvas


def image_grid_panel(results: Results, per_row: int = 10, rows_per_generation: int = 2):
    """Rows = generations (first: real images where the dataset is at hand), columns = samples
    spread over the classes: the look of MAD Fig. 1, one block per run, two blocks a line, each
    image drawn at 2.5 screen pixels per image pixel so digits can be judged."""
    plt = pyplot()
    reps = _sample_runs(results, image=True)
    n_show = per_row * rows_per_generation
    blocks = []
    for label, run_id in reps:
        gens = pick_generations(results.generations(run_id))
        rows, names = [], []
        real = _real_reference(results, run_id, 400, images=True)
        shape = results.samples(run_id, gens[0]).x.shape[1:]
        if real is not None and real.x.shape[1:] != shape:
            real = None
        for name, s in [("real", real)] + [(f"t={g}", results.samples(run_id, g)) for g in gens]:
            if s is None:
                continue
            idx = _balanced(s.y, n_show) if s.y is not None else np.arange(min(n_show, len(s)))
            x = s.x[idx]
            if len(x) < n_show:
                x = np.concatenate([x, -np.ones((n_show - len(x), *x.shape[1:]), np.float32)])
            rows.append(x)
            names.append(name)
        blocks.append((label, names, _tile(np.concatenate(rows), per_row)))
    per_line = min(2, len(blocks))
    lines = math.ceil(len(blocks) / per_line)
    scale = 2.5 / DPI  # inches per image pixel
    width = max(b[2].shape[1] for b in blocks) * scale
    height = max(b[2].shape[0] for b in blocks) * scale
    fig, axes = plt.subplots(lines, per_line, figsize=((width + 0.7) * per_line, (height + 0.45) * lines),
                             squeeze=False)
    for ax in axes.flat[len(blocks):]:
        ax.axis("off")
    for ax, (label, names, canvas) in zip(axes.flat, blocks):
        ax.imshow(canvas, interpolation="nearest")
        h = canvas.shape[0] / len(names)
        ax.set_yticks([(k + 0.5) * h for k in range(len(names))], names, fontsize=8)
        ax.set_xticks([])
        ax.set_title(label, fontsize=9)
    fig.suptitle(f"{results.title}: samples per generation (rows; first: real data)", fontsize=10)
    fig.tight_layout()
    return fig


def _balanced(y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first sample of each class in turn, so a row shows the class spread."""
    picks = []
    for cls in np.unique(y):
        picks.append(np.flatnonzero(y == cls))
    out, depth = [], 0
    while len(out) < k and any(depth < len(p) for p in picks):
        out += [p[depth] for p in picks if depth < len(p)]
        depth += 1
    return np.array(out[:k], dtype=int)


def tsne_panel(results: Results, per_generation: int = 200, generations: int = 5):
    """One joint t-SNE embedding per run of real data and several generations' samples (MAD Figs. 5, 7).

    The first column shows the real reference set; every other column one generation over the real
    points in grey, so drift away from the data is visible; points are coloured by class label
    (a digit legend) where the samples carry labels.
    """
    plt = pyplot()
    reps = representative_runs(results, limit=3)
    if not reps:
        raise Missing("no published generation with samples yet")
    first = results.samples(reps[0][1], results.generations(reps[0][1])[0])
    if first.x.ndim != 4 and first.x.shape[1] <= 2:
        raise Missing("2-D samples need no embedding (see the scatter panel)")
    images = first.x.ndim == 4
    cols = max(len(pick_generations(results.generations(r), generations)) for _, r in reps) + 1
    fig, axes = plt.subplots(len(reps), cols, figsize=(2.3 * cols, 2.3 * len(reps) + 0.6), squeeze=False)
    labelled = False
    for i, (label, run_id) in enumerate(reps):
        sets, names, has_real = _tsne_sets(results, run_id, per_generation, generations, images)
        xs = [p.x[:per_generation].reshape(min(per_generation, len(p)), -1) for p in sets]
        ys = [p.y[:per_generation] if p.y is not None else None for p in sets]
        emb, owner = _joint_tsne(xs)
        labelled |= _tsne_row(axes[i], emb, owner, ys, names, has_real)
        axes[i, 0].set_ylabel(label, fontsize=7)
    if labelled:

        cmap = plt.get_cmap("tab10")
        handles = [Line2D([], [], ls="", marker="o", ms=5, color=cmap(d)) for d in range(10)]
        fig.legend(handles, [str(d) for d in range(10)], title="class", fontsize=7, title_fontsize=7,
                   loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{results.title}: t-SNE of real data and samples, embedded jointly per run "
                 "(grey: the real points)", fontsize=9)
    fig.tight_layout()
    return fig


def _tsne_sets(results: Results, run_id: str, per_generation: int, generations: int, images: bool):
    """(sample sets, their column names, whether the first is the real reference) of one run's row."""
    gens = pick_generations(results.generations(run_id), generations)
    parts = [results.samples(run_id, g) for g in gens]
    real = _real_reference(results, run_id, per_generation, images=images)
    if real is not None and not images:
        real = Samples(np.asarray(real, np.float32), None)
    if real is not None and real.x.shape[1:] != parts[0].x.shape[1:]:
        real = None
    sets = ([real] if real is not None else []) + parts
    names = (["real"] if real is not None else []) + [f"t={g}" for g in gens]
    return sets, names, real is not None


def _joint_tsne(xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One 2-D t-SNE of the stacked sets (PCA to 50 dimensions first), and which set owns each point."""
    stacked = np.concatenate(xs).astype(np.float64)
    owner = np.concatenate([np.full(len(x), k) for k, x in enumerate(xs)])
    if stacked.shape[1] > 50:
        stacked = PCA(50, random_state=0).fit_transform(stacked)
    perplexity = float(min(30, max(2, (len(stacked) - 1) // 3)))
    with threadpool_limits(1):  # OpenMP spin-waiting on a busy machine costs 100x here
        emb = TSNE(2, perplexity=perplexity, init="pca", random_state=0).fit_transform(stacked)
    return emb, owner


def _tsne_row(row, emb: np.ndarray, owner: np.ndarray, ys: list, names: list[str], has_real: bool) -> bool:
    """Draw one run's columns (each set over the others in grey); True when points carry labels."""
    labelled = False
    background = owner == 0 if has_real else np.zeros(len(owner), bool)
    for j, ax in enumerate(row):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= len(names):
            ax.axis("off")
            continue
        mine = owner == j
        other = background & ~mine if has_real else ~mine
        ax.scatter(emb[other, 0], emb[other, 1], s=2, c="0.82", rasterized=True)
        if ys[j] is not None:
            labelled = True
            ax.scatter(emb[mine, 0], emb[mine, 1], s=3, c=ys[j], cmap="tab10", vmin=0, vmax=9, rasterized=True)
        else:
            ax.scatter(emb[mine, 0], emb[mine, 1], s=3, c="0.2" if names[j] == "real" else "tab:blue",
                       rasterized=True)
        ax.set_title(names[j], fontsize=8)
    return labelled


def final_vs_total_panel(results: Results, metric: str = "w2", last: int = 3):
    """MAD Fig. 31: the loop's limit (mean of the last generations) vs total n = n_r + n_s,
    one line per real fraction n_r / n, line style by λ."""
    import seaborn as sns  # after pyplot() chose the Agg backend (seaborn imports pyplot)

    plt = pyplot()
    vals = results.values
    data = vals[vals["metric"] == metric]
    if data.empty:
        raise Missing(f"no {metric} values yet")
    if not {"n_real", "n_synthetic"} <= set(data.columns):
        raise Missing("table lacks n_real / n_synthetic")
    top = data.groupby("run_id")["generation"].transform("max")
    tail = data[data["generation"] > top - last]
    per_run = tail.groupby("run_id").agg(value=("value", "mean"), n_real=("n_real", "first"),
                                         n_synthetic=("n_synthetic", "first"),
                                         bias=("bias", "first")).reset_index()
    per_run["total n"] = per_run["n_real"] + per_run["n_synthetic"]
    if per_run["total n"].nunique() < 2:
        raise Missing("needs runs at two or more total sizes n")
    per_run["real fraction"] = (per_run["n_real"] / per_run["total n"]).round(3).astype(str)
    per_run["λ"] = per_run["bias"].map(lambda b: f"{b:g}")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    sns.lineplot(data=per_run, x="total n", y="value", hue="real fraction", style="λ", markers=True,
                 errorbar=("ci", 95), n_boot=_BOOT, seed=0, ax=ax)
    ax.set(xscale="log", yscale="log", ylabel=f"{metric} (mean of last {last} generations)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    ax.set_title(f"{results.title}: limit {metric} vs n", fontsize=9)
    fig.tight_layout()
    return fig


def ess_panels(results: Results):
    """MAD Figs. 11/12: heat maps of n_e / n_r from the Monte-Carlo table."""
    import seaborn as sns  # after pyplot() chose the Agg backend (seaborn imports pyplot)

    plt = pyplot()
    ess = results.ess
    if ess is None or ess.empty:
        raise Missing("no ess.parquet (run madlab run loops/fig11_12_ess.yaml)")
    out = {}
    f11 = ess[ess["figure"] == "fig11"]
    if not f11.empty:
        lams = sorted(f11["bias"].unique(), reverse=True)
        fig, axes = plt.subplots(1, len(lams), figsize=(4.6 * len(lams), 4.2), squeeze=False)
        for ax, lam in zip(axes[0], lams):
            grid = f11[f11["bias"] == lam].pivot_table(index="n_real", columns="n_synthetic", values="ratio")
            grid = grid.sort_index(ascending=False)
            sns.heatmap(grid, ax=ax, cmap="RdBu", center=1.0, vmin=0, vmax=2, annot=True, fmt=".2f",
                        annot_kws={"fontsize": 5.5}, cbar=ax is axes[0][-1], cbar_kws={"label": "n_e / n_r"})
            ax.set_title(f"λ = {lam:g}", fontsize=9)
            ax.set_xlabel("n_s")
            ax.set_ylabel("n_r")
        fig.suptitle("Fig. 11: effective sample size n_e / n_r of the Gaussian fresh-real loop", fontsize=10)
        fig.tight_layout()
        out["fig11"] = fig
    f12 = ess[ess["figure"] == "fig12"]
    if not f12.empty:
        grid = f12.pivot_table(index="bias", columns="n_synthetic", values="ratio").sort_index(ascending=False)
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        sns.heatmap(grid, ax=ax, cmap="RdBu", center=1.0, vmin=0, vmax=2, annot=True, fmt=".2f",
                    annot_kws={"fontsize": 6}, cbar_kws={"label": "n_e / n_r"})
        ax.set_yticklabels([f"{float(t.get_text()):g}" for t in ax.get_yticklabels()], rotation=0)
        ax.set(xlabel="n_s", ylabel="λ")
        ax.set_title(f"Fig. 12: n_e / n_r over (λ, n_s), n_r = {int(f12['n_real'].iloc[0])}", fontsize=10)
        fig.tight_layout()
        out["fig12"] = fig
    if not out:
        raise Missing("ess.parquet holds neither fig11 nor fig12 cells")
    return out


def slug(text: str) -> str:
    """A file-name-safe form of a label (λ spelled out, so λ=0.8 and 0.8 stay distinct)."""
    text = text.replace("λ", "lambda")
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")[:80] or "figure"
