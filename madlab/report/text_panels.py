"""Report panels of text runs (the ``tokens`` kind): excerpts per generation, rank-frequency plots,
and the unigram n-gram loop beside its closed form.

A run folder of a text run holds ``tokenizer.json``, so its samples are decoded from the folder alone.
"""
from __future__ import annotations

import textwrap

import numpy as np

from madlab.analysis.results import Results, is_text_run
from madlab.datasets import open_dataset
from madlab.report.plots import Missing, pick_generations, pyplot, representative_runs
from madlab.store.tokenizer_file import load_tokenizer

_EXCERPT_CHARS = 90
_EXCERPTS = 2


def _tokens(results: Results, run_id: str, generation: int) -> np.ndarray:
    return np.asarray(results.run(run_id).samples(generation).x).astype(np.int64)


def _tokenizer(results: Results, run_id: str):
    return load_tokenizer(results.run(run_id))


def _text_runs(results: Results) -> list[tuple[str, str]]:
    reps = [(label, r) for label, r in representative_runs(results) if is_text_run(results, r)]
    if not reps:
        raise Missing("no text run with published samples yet")
    return reps


def _real_tokens(results: Results, run_id: str, n: int) -> np.ndarray | None:
    """Held-out real documents of the run's dataset, when it can be opened here (never downloads)."""
    cfg = results.config(run_id)
    ds = cfg.get("dataset") or {}
    try:
        dataset = open_dataset(ds)
        return dataset.eval_set(min(n, getattr(dataset, "heldout_size", n)), seed=int(cfg.get("seed", 0))).x
    except Exception:
        return None


def text_excerpts_panel(results: Results):
    """The text analogue of image rows: per run, the first documents of each generation (real first)."""
    plt = pyplot()
    reps = _text_runs(results)[:3]
    blocks = []
    for label, run_id in reps:
        tok = _tokenizer(results, run_id)
        rows = []
        real = _real_tokens(results, run_id, _EXCERPTS)
        if real is not None:
            rows.append(("real", tok.decode_batch(real[:_EXCERPTS])))
        for g in pick_generations(results.generations(run_id)):
            rows.append((f"t={g}", tok.decode_batch(_tokens(results, run_id, g)[:_EXCERPTS])))
        blocks.append((label, rows))
    lines = sum(1 + len(rows) * _EXCERPTS for _, rows in blocks) + 2
    fig = plt.figure(figsize=(11, 0.22 * lines + 0.4))
    step = 1.0 / (lines + 1)
    fig.text(0.01, 1.0, f"{results.title}: generated text per generation (first {_EXCERPTS} documents)",
             fontsize=9, va="top")
    y = 1.0 - 2 * step
    for label, rows in blocks:
        fig.text(0.01, y, label, fontsize=8, weight="bold", va="top")
        y -= step
        for name, texts in rows:
            for i, text in enumerate(texts):
                flat = " ".join(text.split())
                snippet = textwrap.shorten(flat, _EXCERPT_CHARS, placeholder=" …") if flat else "(empty)"
                fig.text(0.01, y, name if i == 0 else "", fontsize=7, family="monospace", va="top")
                fig.text(0.07, y, snippet, fontsize=7, family="monospace", va="top")
                y -= step
    return fig


def rank_frequency_panel(results: Results):
    """Token rank-frequency (log-log) per generation, the real held-out text in black: the tail's fate."""
    plt = pyplot()
    reps = _text_runs(results)
    fig, axes = plt.subplots(1, len(reps), figsize=(3.2 * len(reps), 3.0), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, (label, run_id) in zip(axes[0], reps):
        gens = pick_generations(results.generations(run_id))
        real = _real_tokens(results, run_id, 500)
        if real is not None:
            _rank_curve(ax, real, color="black", label="real", lw=1.6)
        for k, g in enumerate(gens):
            _rank_curve(ax, _tokens(results, run_id, g), color=cmap(k / max(1, len(gens) - 1)), label=f"t={g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("token rank", fontsize=7)
        ax.set_ylabel("frequency", fontsize=7)
        ax.set_title(label, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.suptitle(f"{results.title}: token rank-frequency per generation", fontsize=9)
    fig.tight_layout()
    return fig


def _rank_curve(ax, x: np.ndarray, **style) -> None:
    counts = np.bincount(x[x >= 0].ravel())
    counts = np.sort(counts[counts > 0])[::-1]
    if len(counts):
        ax.plot(np.arange(1, len(counts) + 1), counts / counts.sum(), **style)


# ------------------------------------------------------------------------- unigram theory

def unigram_gini_simpson(generations: int, scheme: str, *, gs_first: float, real_tokens_first: int,
                         real_tokens: int, synthetic_tokens: int) -> np.ndarray:
    """E[Gini–Simpson] of a maximum-likelihood unigram refitted on its own samples, t = 1..generations.

    ``gs_first`` is generation 1's value (its model = the real rows' frequencies r, so Σr² = 1 −
    gs_first). Fully synthetic (Wright–Fisher): GS_t = GS_{t−1}(1 − 1/S). Fixed real (R real tokens
    kept, S synthetic, a = R/(R+S)): E[Σp_t²] = (1 − (1−a)²)Σr² + (1−a)²[(1 − 1/S)E[Σp_{t−1}²] + 1/S].
    The derivation and its tests: tests/test_ngram_theory.py.
    """
    out = np.empty(generations)
    out[0] = gs_first
    s = synthetic_tokens
    if scheme == "fully-synthetic":
        for t in range(1, generations):
            out[t] = out[t - 1] * (1 - 1 / s)
        return out
    if scheme == "fixed-real":
        a = real_tokens / (real_tokens + s)
        r2 = q = 1 - gs_first
        for t in range(1, generations):
            q = (1 - (1 - a) ** 2) * r2 + (1 - a) ** 2 * ((1 - 1 / s) * q + 1 / s)
            out[t] = 1 - q
        return out
    raise ValueError(f"no closed form for scheme {scheme!r}")


def _theory_eligible(cfg: dict) -> bool:
    gen, loop, ds = cfg.get("generator", {}), cfg.get("loop", {}), cfg.get("dataset", {})
    return (gen.get("name") == "ngram" and gen.get("order", 3) == 1 and float(gen.get("add_k", 0.0)) == 0.0
            and float(loop.get("bias", 1.0)) == 1.0 and ds.get("name") in ("zipf-text", "markov-text")
            and loop.get("scheme") in ("fully-synthetic", "fixed-real") and not loop.get("accumulate_synthetic"))


def ngram_theory_panel(results: Results):
    """Measured model Gini–Simpson (mean over seeds, ±2 s.e.) of unigram loops beside the closed form."""
    plt = pyplot()
    values = results.values
    data = values[values["metric"] == "model_gini_simpson"]
    if data.empty:
        raise Missing("no model_gini_simpson values (ngram runs) yet")
    groups = {}
    for run_id in data["run_id"].unique():
        cfg = results.config(run_id)
        if not _theory_eligible(cfg):
            continue
        loop, ds = cfg["loop"], cfg["dataset"]
        length = int(ds.get("max_tokens", 32))
        key = (loop["scheme"], loop["n_real"], loop["n_synthetic"], loop["generations"], length)
        groups.setdefault(key, []).append(run_id)
    if not groups:
        raise Missing("no run is a maximum-likelihood unigram (order 1, add_k 0, λ = 1) on a synthetic source")
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    colors = plt.get_cmap("tab10")
    for i, ((scheme, n_real, n_syn, gens, length), runs) in enumerate(sorted(groups.items())):
        wide = data[data["run_id"].isin(runs)].pivot_table(index="run_id", columns="generation", values="value")
        wide = wide.dropna(axis=1)
        t = wide.columns.to_numpy()
        mean = wide.mean(0).to_numpy()
        se = wide.std(0, ddof=1).to_numpy() / np.sqrt(len(wide)) if len(wide) > 1 else np.zeros_like(mean)
        label = f"{scheme} (n_r={n_real}, n_s={n_syn}, {len(wide)} seeds)"
        ax.errorbar(t, mean, yerr=2 * se, fmt="o", ms=3, color=colors(i), label=label, capsize=2)
        predicted = np.mean([unigram_gini_simpson(int(t.max()), scheme, gs_first=float(row[t.min()]),
                                                  real_tokens_first=n_real * length, real_tokens=n_real * length,
                                                  synthetic_tokens=n_syn * length)
                             for _, row in wide.iterrows()], axis=0)
        ax.plot(np.arange(1, int(t.max()) + 1), predicted, color=colors(i), lw=1.2, label=f"{scheme}: closed form")
    ax.set_xlabel("generation", fontsize=8)
    ax.set_ylabel("Gini–Simpson 1 − Σp²", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    ax.set_title(f"{results.title}: unigram loop vs closed form", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["text_excerpts_panel", "rank_frequency_panel", "ngram_theory_panel", "unigram_gini_simpson"]
