"""Report panels of text runs: excerpts, rank-frequency and the unigram loop beside its closed form."""
from __future__ import annotations

import numpy as np
import pytest

from madlab.report import make_report
from madlab.report.text_panels import unigram_gini_simpson


def test_closed_form_recursions():
    gs = unigram_gini_simpson(4, "fully-synthetic", gs_first=0.8, real_tokens_first=50, real_tokens=50,
                              synthetic_tokens=100)
    np.testing.assert_allclose(gs, 0.8 * 0.99 ** np.arange(4))
    fixed = unigram_gini_simpson(200, "fixed-real", gs_first=0.8, real_tokens_first=50, real_tokens=50,
                                 synthetic_tokens=100)
    a, s, r2 = 50 / 150, 100, 0.2
    q_star = ((1 - (1 - a) ** 2) * r2 + (1 - a) ** 2 / s) / (1 - (1 - a) ** 2 * (1 - 1 / s))
    assert fixed[0] == 0.8 and fixed[-1] == pytest.approx(1 - q_star, rel=1e-12)
    assert fixed[-1] < 0.8 and (np.diff(fixed) <= 0).all()  # loses a little diversity, then holds


def test_text_report_panels(cli, write_spec, tmp_path):
    spec = {"name": "text-report", "dataset": {"name": "zipf-text", "vocab_size": 40, "max_tokens": 6},
            "generator": {"name": "ngram", "order": 1},
            "loop": {"scheme": "fully-synthetic", "generations": 4, "n_real": 30, "n_synthetic": 30},
            "metrics": {"n_eval": 30}, "sweep": {"loop.scheme": ["fully-synthetic", "fixed-real"], "seed": [0, 1]}}
    out = tmp_path / "out"
    assert cli("run", write_spec(spec), "--out", out, "--no-ray")[0] == 0
    paths = make_report(str(out))
    names = {p.rsplit("/", 1)[-1] for p in paths}
    for panel in ("text", "rankfreq", "ngram_theory", "metrics"):
        assert any(n.startswith(f"text-report_{panel}") and n.endswith(".png") for n in names), (panel, names)
    html = (out / "figures" / "index.html").read_text()
    assert "Generated text per generation" in html and "closed form" in html


#: the text-lm feature metrics a spec asks for, beside perplexity and lexical diversity (loops/text_accumulate.yaml)
FEATURE_NAMES = ["perplexity", "ref_perplexity", "fid", "kid", "precision", "recall", "coverage", "vendi", "distinct_4",
                 "self_bleu"]


def text_feature_folder(tmp_path, generations: int = 3):
    """A results folder of two schemes x two seeds of a smoothed bigram loop on a small local corpus,
    scored with the text-lm feature metrics (the run's own encoder, trained in the folder's cache with
    fewer steps than the default recipe)."""
    import yaml

    from madlab.cli import main
    from madlab.features import feature_extractor_text_lm as text_lm
    from test_text_features import write_corpus

    root = write_corpus(tmp_path / "corpus", every=12)
    spec = {"name": "textfeat", "seed": 0,
            "dataset": {"name": "text", "root": str(root), "max_chars": 48, "max_tokens": 48, "heldout": 120},
            "generator": {"name": "ngram", "order": 2, "add_k": 0.1},  # smoothed: a finite perplexity
            "loop": {"scheme": "fully-synthetic", "generations": generations, "n_real": 60, "n_synthetic": 60},
            "metrics": {"names": FEATURE_NAMES, "k": 3},  # n_eval = n_synthetic = 60 of the 120 held out
            "sweep": {"loop.scheme": ["fully-synthetic", "accumulate"], "seed": [0, 1]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
        mp.setitem(text_lm.RECIPE, "steps", 20)
        assert main(["run", str(path), "--out", str(out), "--no-ray"]) == 0
    return out


@pytest.fixture(scope="module")
def feature_folder(tmp_path_factory):
    return text_feature_folder(tmp_path_factory.mktemp("textfeat"))


def test_text_summary_has_perplexity_feature_metrics_and_a_real_reference(feature_folder):
    from madlab.analysis.results import open_results
    from madlab.report.summary import TEXT_HEADLINE, generation_table, reference_level

    results = open_results(feature_folder)
    table = generation_table(results)
    for m in TEXT_HEADLINE:  # every headline metric of text runs, at generation 1 and at the last
        assert f"{m} @1" in table and f"{m} @last" in table, m
    assert "kid @1" not in table  # in the table's metrics, not among the summary's headline ones
    rows = table.to_dict("records")
    assert [r["scheme"] for r in rows[:2]] == ["fully-synthetic", "accumulate"] and rows[0]["last"] == 3
    values = results.values
    mine = values[(values["scheme"] == "accumulate") & (values["metric"] == "fid") & (values["generation"] == 3)]
    assert rows[1]["fid @last"] == pytest.approx(mine["value"].mean()) and len(mine) == 2
    reference = rows[-1]
    assert str(reference["scheme"]).startswith("real vs real") and len(rows) == 3
    # a second real sample scored like the generated ones: every sample metric has a level ...
    for m in ("ref_perplexity", "fid", "precision", "recall", "coverage", "vendi", "distinct_4", "self_bleu"):
        assert np.isfinite(reference[f"{m} @1"]), m
        assert reference_level(results, m) == pytest.approx(reference[f"{m} @1"])
    # ... but perplexity is the model's on held-out text: real data have no analogue of it
    assert np.isnan(reference["perplexity @1"]) and reference_level(results, "perplexity") is None
    assert 0 < reference_level(results, "fid") < rows[0]["fid @1"]  # another real sample: closer than any model


def test_text_report_draws_feature_metric_curves_with_the_reference(feature_folder):
    import matplotlib

    matplotlib.use("Agg")
    from madlab.report.plots import REFERENCE_STYLE, metrics_panel
    from madlab.analysis.results import open_results
    from madlab.report.summary import reference_level

    folder = feature_folder
    results = open_results(folder)
    fig = metrics_panel(results, ["perplexity", "fid", "coverage"], "bias")
    levels = {}
    for ax in fig.axes:
        dotted = [ln for ln in ax.get_lines()  # axhline: x from 0 to 1 in axes coordinates
                  if ln.get_color() == REFERENCE_STYLE["color"] and list(ln.get_xdata()) == [0, 1]]
        levels[ax.get_title()] = [ln.get_ydata()[0] for ln in dotted]
    assert levels["fid"] == [pytest.approx(reference_level(results, "fid"))]
    assert levels["coverage"] == [pytest.approx(reference_level(results, "coverage"))]
    assert levels["perplexity"] == []  # no real-vs-real perplexity: no line
    paths = make_report(str(folder))
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert {"textfeat_metrics.png", "textfeat_text.png", "textfeat_rankfreq.png"} <= names, names
    html = (folder / "figures" / "index.html").read_text()
    summary = html.split("<section id='summary'>")[1].split("</section>")[0]
    for m in ("perplexity", "fid", "precision", "recall", "coverage", "vendi"):
        assert f"<th colspan=2>{m}</th>" in summary, m
    assert "real vs real" in summary
