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
