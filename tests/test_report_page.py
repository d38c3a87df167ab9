"""The report page as a person sees it: index.html rendered in headless Chromium.

Skipped where no browser is at hand: it needs the ``playwright`` package (``pip install
"madlab[browser]"``) and a Chromium binary on ``PATH`` (``chromium``, ``chromium-browser`` or
``google-chrome``; e.g. Debian's ``apt-get install chromium``): nothing is downloaded. Set
``MADLAB_SCREENSHOT_DIR`` to keep the screenshots for a look.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from madlab.report import make_report
from test_report import write_folder

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (madlab[browser])")
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def render(browser, index: Path, shot: Path) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(index.resolve().as_uri())
    page.wait_for_load_state("load")
    state = page.evaluate("""() => ({
        images: [...document.images].map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
                                                  shown: i.getBoundingClientRect().width})),
        headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
        summaryRows: document.querySelectorAll('#summary table.grid tbody tr').length,
        referenceRows: document.querySelectorAll('#summary tr.ref').length,
        height: document.body.scrollHeight})""")
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    keep = os.environ.get("MADLAB_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return state


@pytest.mark.parametrize("image", [False, True], ids=["2d", "images"])
def test_index_renders_with_every_image(browser, tmp_path, image):
    from PIL import Image

    folder = write_folder(tmp_path / "res", name="page", image=image, generations=3,
                          metrics=("fid", "precision", "recall") if image else ("w2", "precision", "trace_cov"))
    make_report(str(folder))
    shot = tmp_path / f"report-page-{'images' if image else '2d'}.png"
    state = render(browser, folder / "figures" / "index.html", shot)
    assert state["images"], "no images on the page"
    broken = [i for i in state["images"] if not i["complete"] or i["w"] == 0 or i["shown"] == 0]
    assert not broken, f"{len(broken)} images did not load or are not shown"
    assert state["headings"][:3] == ["What ran", "Generation 1 vs last generation", "Metrics vs generation"]
    assert state["headings"][-1] == "Provenance"
    assert state["summaryRows"] == 3 and state["referenceRows"] == 1  # λ = 1, 0.8 and real vs real
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] >= min(state["height"], 16000) - 2 and pixels.shape[1] == 1280
    assert pixels.std() > 10, "the screenshot is blank"


def test_text_index_renders_with_feature_metrics(browser, tmp_path):
    """A text folder scored with the text-lm feature metrics: curves, excerpts and rank-frequency plots
    load, and the summary has both schemes and the real-vs-real row."""
    from test_text_report import text_feature_folder

    folder = text_feature_folder(tmp_path / "text")
    make_report(str(folder))
    state = render(browser, folder / "figures" / "index.html", tmp_path / "report-page-text.png")
    broken = [i for i in state["images"] if not i["complete"] or i["w"] == 0 or i["shown"] == 0]
    assert len(state["images"]) >= 3 and not broken, state["images"]
    assert state["headings"][:3] == ["What ran", "Generation 1 vs last generation", "Metrics vs generation"]
    assert state["summaryRows"] == 3 and state["referenceRows"] == 1  # two schemes and real vs real
