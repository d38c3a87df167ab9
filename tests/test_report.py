"""madlab.report: figures and index from synthetic results tables, a real quickstart folder,
partial folders, effective-sample-size folders; one-line errors on folders that are not results."""
import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from madlab.core.errors import MadlabError
from madlab.report import make_report
from madlab.report.catalogue import CATALOGUE, lookup
from madlab.analysis.results import open_results

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG"


def write_folder(root: Path, *, name="toy", image=False, biases=(1.0, 0.8), seeds=(0, 1), generations=4,
                 metrics=("w2", "precision", "recall", "trace_cov"), dataset="gaussian", failed=None,
                 missing_gens=None) -> Path:
    """A results folder in the docs/design.md layout, with made-up but schema-true contents."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "runs").mkdir(parents=True)
    for bias in biases:
        for seed in seeds:
            run_id = f"bias={bias}-seed{seed}"
            gens = generations if missing_gens is None or seed == 0 else missing_gens
            config = {"name": name, "seed": seed,
                      "dataset": {"name": dataset, "dim": 2} if not image else {"name": "mnist5k"},
                      "generator": {"name": "gaussian" if not image else "ddpm"},
                      "loop": {"scheme": "fully-synthetic", "generations": generations, "n_real": 50,
                               "n_synthetic": 50, "bias": bias, "n_initial": None, "memory": 1}}
            run_dir = root / "runs" / run_id
            run_dir.mkdir()
            (run_dir / "config.json").write_text(json.dumps({"config": config, "swept": {"bias": bias}}))
            for t in range(1, gens + 1):
                gen = run_dir / f"gen-{t:04d}"
                gen.mkdir()
                if image:
                    x = rng.integers(0, 255, (40, 1, 8, 8)).astype(np.uint8)
                    with open(gen / "samples.npz", "wb") as f:
                        np.savez(f, x_uint8=x, y=rng.integers(0, 10, 40))
                else:
                    x = (rng.standard_normal((200, 2)) * bias ** (t / 2)).astype(np.float32)
                    with open(gen / "samples.npz", "wb") as f:
                        np.savez(f, x=x)
                reference = {m: 0.5 for m in metrics if m != "trace_cov"} if t == 1 else None
                (gen / "DONE").write_text(json.dumps({"metadata": {"real_vs_real": reference}} if reference else {}))
                for m in metrics:
                    value = 2 * bias ** (t - 1) if m == "trace_cov" else float(rng.random())
                    rows.append(dict(sweep=name, run_id=run_id, generator=config["generator"]["name"],
                                     dataset=config["dataset"]["name"], scheme="fully-synthetic", bias=bias,
                                     n_real=50, n_synthetic=50, n_initial=None, seed=seed, generation=t,
                                     metric=m, value=value, n_train_real=50 if t == 1 else 0,
                                     n_train_synthetic=0 if t == 1 else 50,
                                     synthetic_from="" if t == 1 else str(t - 1), status="ok", error=None,
                                     extractor="lenet-mnist" if image else None,
                                     extractor_hash="abc123" if image else None))
    if failed:
        rows.append(dict(sweep=name, run_id="broken-run", generator="gaussian", dataset=dataset,
                         scheme="fully-synthetic", bias=0.5, n_real=50, n_synthetic=50, n_initial=None,
                         seed=0, generation=2, metric="failed", value=float("nan"), status="failed",
                         error=failed))
    pd.DataFrame(rows).to_parquet(root / "metrics.parquet", index=False)
    (root / "run.json").write_text(json.dumps({"name": name, "spec": f"loops/{name}.yaml",
                                               "command": f"madlab run loops/{name}.yaml --preset cpu",
                                               "created": "2026-01-01T00:00:00+00:00", "madlab_version": "0.1.0"}))
    return root


def figure_names(paths):
    return sorted(Path(p).name for p in paths)


def embedded_images(index: Path) -> list[bytes]:
    text = index.read_text()
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def test_report_on_synthetic_lowdim_table(tmp_path):
    folder = write_folder(tmp_path / "res")
    paths = make_report(str(folder))
    names = figure_names(paths)
    for stem in ("toy_metrics", "toy_samples", "toy_theory"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names, names
    assert "index.html" in names
    for p in paths:
        assert Path(p).is_file() and Path(p).stat().st_size > 0
        assert Path(p).parent == folder / "figures"
    images = embedded_images(folder / "figures" / "index.html")
    assert len(images) == 3 and all(i.startswith(PNG_MAGIC) for i in images)
    html = (folder / "figures" / "index.html").read_text()
    assert "loops/toy.yaml" in html and "--preset cpu" in html and "gaussian" in html
    assert html.count("<h2>Provenance</h2>") == 1 and html.count("--preset cpu") == 1  # the block once
    assert "<th>λ (sampling bias)</th><td>1, 0.8</td>" in html and "<th>seeds</th><td>2 (0, 1)</td>" in html

    stale = folder / "figures" / "old_panel.png"  # a re-run replaces figures it no longer draws
    stale.write_bytes(b"x")
    assert figure_names(make_report(str(folder))) == names
    assert not stale.exists()


def test_summary_table_has_generation_1_last_and_real_reference(tmp_path):
    from madlab.report.summary import generation_table, reference_level

    folder = write_folder(tmp_path / "res", metrics=("w2", "precision"), generations=3)
    results = open_results(folder)
    table = generation_table(results)
    assert list(table["bias"][:2]) == [1.0, 0.8] and list(table["seeds"][:2]) == [2, 2]
    values = results.values
    for row, bias in zip(table.to_dict("records")[:2], (1.0, 0.8)):
        mine = values[(values["bias"] == bias) & (values["metric"] == "precision")]
        assert row["precision @1"] == pytest.approx(mine[mine["generation"] == 1]["value"].mean())
        assert row["precision @last"] == pytest.approx(mine[mine["generation"] == 3]["value"].mean())
    reference = table.iloc[-1]
    assert str(reference["bias"]).startswith("real vs real") and reference["precision @1"] == 0.5
    assert reference_level(results, "w2") == 0.5
    make_report(str(folder))
    html = (folder / "figures" / "index.html").read_text()
    assert "Generation 1 vs last generation" in html and "real vs real" in html
    assert "too small for two disjoint sets" not in html


def test_a_real_vs_real_sample_that_shares_rows_says_so(tmp_path):
    folder = write_folder(tmp_path / "res", metrics=("w2", "precision"), generations=2)
    for i, done in enumerate(sorted(folder.glob("runs/*/gen-0001/DONE"))):
        record = json.loads(done.read_text())
        record["metadata"]["real_vs_real_shared"] = 3 + i
        done.write_text(json.dumps(record))
    make_report(str(folder))
    html = (folder / "figures" / "index.html").read_text()
    assert f"up to {3 + i} rows of that sample are also in the reference set" in html


def test_theory_slices_come_first(tmp_path):
    from madlab.report import _slices

    folder = write_folder(tmp_path / "res", metrics=("w2",), generations=2)
    table = pd.read_parquet(folder / "metrics.parquet")
    table["model"] = np.where(table["seed"] == 0, "a-neural", "z-gaussian")
    table["generator"] = np.where(table["seed"] == 0, "gan", "gaussian")
    table.to_parquet(folder / "metrics.parquet", index=False)
    views, _ = _slices(open_results(folder), "bias")
    assert [v.label for v in views] == ["model=z-gaussian", "model=a-neural"]


def test_catalogued_figure_lists_missing_metrics(tmp_path):
    folder = write_folder(tmp_path / "res", name="fig14_15_gmm", dataset="gmm25", metrics=("w2", "recall"))
    make_report(str(folder))
    html = (folder / "figures" / "index.html").read_text()
    assert "Figs. 14, 15" in html
    assert "missing" in html and "&#x27;modes&#x27; not in the table" in html


def test_report_on_images_draws_grids_and_tsne(tmp_path):
    folder = write_folder(tmp_path / "res", name="imgs", image=True, biases=(1.0,), seeds=(0,), generations=3,
                          metrics=("fid", "precision"))
    names = figure_names(make_report(str(folder)))
    assert {"imgs_samples.png", "imgs_tsne.png", "imgs_metrics.png"} <= set(names)
    html = (folder / "figures" / "index.html").read_text()
    assert "lenet-mnist abc123" in html  # the metric extractor and its hash


@pytest.mark.parametrize("biases", [(1.0,), (1.0, 0.8)])
def test_sweep_mixing_image_and_2d_runs_draws_each_kind_its_way(tmp_path, biases):
    """The quickstart sweeps a `model` axis over 2-D and MNIST runs. With λ swept, `model` makes
    one slice per model; without, `model` is the colour and one slice holds both kinds: either
    way the image runs get a sample grid and the 2-D runs a scatter, in whatever order."""
    import shutil

    images = write_folder(tmp_path / "a", name="mix", image=True, biases=biases, seeds=(0,), generations=2,
                          metrics=("fid", "precision"))
    points = write_folder(tmp_path / "b", name="mix", biases=biases, seeds=(1,), generations=2,
                          metrics=("w2", "precision"))
    tables = []
    for folder, model in ((images, "gan-mnist5k"), (points, "gan-gmm25")):
        table = pd.read_parquet(folder / "metrics.parquet")
        table["run_id"] = model + "-" + table["run_id"]
        table["model"] = model
        tables.append(table)
        for run in (folder / "runs").iterdir():
            record = json.loads((run / "config.json").read_text())
            record["swept"]["model"] = model
            (run / "config.json").write_text(json.dumps(record))
            shutil.move(str(run), str(images / "runs" / f"{model}-{run.name}"))
    pd.concat(tables, ignore_index=True).to_parquet(images / "metrics.parquet", index=False)
    names = set(figure_names(make_report(str(images))))
    if len(biases) == 2:
        expected = {"mix_samples_model_gan-mnist5k.png", "mix_samples_model_gan-gmm25.png",
                    "mix_tsne_model_gan-mnist5k.png"}
        assert "mix_tsne_model_gan-gmm25.png" not in names
    else:
        expected = {"mix_samples.png", "mix_points.png"}
    assert expected <= names, names
    assert "Missing figures" not in (images / "figures" / "index.html").read_text()


def test_partial_folder_with_failed_run(tmp_path):
    folder = write_folder(tmp_path / "res", missing_gens=1, failed="RunFailed: NaN loss at step 3")
    (folder / "runs" / "bias=1.0-seed0" / "gen-0009").mkdir()  # a generation still being written
    paths = make_report(str(folder))
    assert "toy_metrics.png" in figure_names(paths)
    html = (folder / "figures" / "index.html").read_text()
    assert "Failed runs" in html and "NaN loss at step 3" in html


@pytest.mark.parametrize("make", ["missing", "empty", "no_table", "bad_parquet"])
def test_not_a_results_folder(tmp_path, make):
    folder = tmp_path / "x"
    if make != "missing":
        folder.mkdir()
    if make == "no_table":
        (folder / "run.json").write_text("{}")
    if make == "bad_parquet":
        (folder / "metrics.parquet").write_text("not parquet")
    with pytest.raises(MadlabError) as info:
        make_report(str(folder))
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    if make in ("empty", "no_table"):
        assert message == f"{folder}: not a madlab results folder (no metrics.parquet)"
    assert not (folder / "figures").exists()


def test_report_on_an_object_store_folder(tmp_path, cli):
    """Results left on an object store by a cluster: `madlab report URI` draws them and puts the
    figures next to them; checkpoints are not downloaded."""
    import uuid

    import fsspec

    folder = write_folder(tmp_path / "res")
    (folder / "runs" / "bias=1.0-seed0" / "gen-0001" / "state.safetensors").write_bytes(b"weights")
    fs = fsspec.filesystem("memory")
    root = f"/bucket-{uuid.uuid4().hex[:8]}/res"
    fs.put(str(folder), root, recursive=True)
    uri = f"memory://{root}"
    mirror = tmp_path / "mirror"
    code, out, err = cli("report", uri, "--local", mirror)
    assert code == 0, err
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.glob(root + "/figures/*"))
    assert names == figure_names(str(p) for p in (mirror / "figures").iterdir())
    assert {"toy_metrics.png", "toy_metrics.pdf", "index.html"} <= set(names)
    assert fs.cat_file(root + "/figures/toy_metrics.png").startswith(PNG_MAGIC)
    assert "memory://" in out and "index.html" in out
    assert not list(mirror.rglob("state.safetensors"))

    fs.rm(root + "/runs/bias=0.8-seed1", recursive=True)  # the table still has it; samples gone
    assert make_report(uri, local_dir=str(mirror))[-1].endswith("/figures/index.html")

    with pytest.raises(MadlabError, match="not a madlab results folder"):
        make_report(f"memory:///bucket-{uuid.uuid4().hex[:8]}/nothing", local_dir=str(tmp_path / "m2"))


def test_ess_folder_draws_heat_maps(tmp_path):
    from madlab.engine import theory

    spec = tmp_path / "ess.yaml"
    spec.write_text("name: fig11_12_ess\ness: {dim: 2, reps: 10, curve_reps: 300, fig11_bias: [1.0, 0.8],"
                    " fig11_n_real: [100, 200], fig11_n_synthetic: [100, 200], fig12_n_real: 100,"
                    " fig12_bias: [0.8, 1.0], fig12_n_synthetic: [100, 200]}\n")
    out = tmp_path / "ess"
    assert theory.main(["ess", str(spec), "--out", str(out)]) == 0
    names = figure_names(make_report(str(out)))
    assert {"fig11_12_ess_ess_fig11.png", "fig11_12_ess_ess_fig12.png"} <= set(names)
    assert "Figs. 11, 12" in (out / "figures" / "index.html").read_text()


def test_report_on_a_real_quickstart_folder(tmp_path):
    from madlab.specs import build_spec, load_yaml
    from madlab.runner import Runner

    raw = load_yaml(ROOT / "loops" / "quickstart.yaml")
    raw["sweep"] = raw["sweep"][0]  # the Gaussian/GMM block: the neural block takes minutes
    spec = build_spec(raw, overrides=["loop.generations=2", "loop.n_real=60", "loop.n_synthetic=60",
                                      "sweep.loop.scheme=[fixed-real]"], path=str(ROOT / "loops" / "quickstart.yaml"))
    out = tmp_path / "qs"
    Runner(spec, str(out), command="madlab run --set loop.generations=2", use_ray=False, stream=open("/dev/null", "w")).run()
    results = open_results(out)
    assert set(results.axes) == {"bias", "model"}  # generator and dataset follow from model
    names = set(figure_names(make_report(str(out))))
    for model in ("gaussian-2d", "gmm-gmm25"):
        assert {f"quickstart_metrics_model_{model}.png", f"quickstart_samples_model_{model}.png"} <= names
    assert "quickstart_theory_model_gaussian-2d.png" in names
    html = (out / "figures" / "index.html").read_text()
    assert "Missing figures" not in html
    assert len(embedded_images(out / "figures" / "index.html")) == len([n for n in names if n.endswith(".png")])

    # A sweep still running: the table lags behind the published generations (here: gone).
    table = pd.read_parquet(out / "metrics.parquet")
    (out / "metrics.parquet").unlink()
    live = open_results(out)
    assert len(live.table) == len(table) and set(live.table["run_id"]) == set(table["run_id"])
    assert set(figure_names(make_report(str(out)))) == names


#: the MAD figure specs and the curation studies (madlab.curation) that have report entries
SPECS = sorted((ROOT / "loops").glob("fig*.yaml")) + sorted((ROOT / "loops").glob("curation_*.yaml"))


def test_every_figure_has_a_spec_and_every_spec_a_figure():
    specs = {}
    for path in SPECS:
        specs[yaml.safe_load(path.read_text())["name"]] = path
    assert set(specs) == set(CATALOGUE), (set(specs) ^ set(CATALOGUE))
    for name in specs:
        assert lookup(name) is CATALOGUE[name]
        text = specs[name].read_text()
        assert "cpu" in text  # every spec documents its cpu-scale switch


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_figure_specs_validate_at_both_scales(path):
    """Paper scale as written, and the documented cpu preset, pass validation before anything runs."""
    raw = yaml.safe_load(path.read_text())
    if "ess" in raw:
        from madlab.engine.theory import _load_study

        paper, _ = _load_study(str(path), None, [])
        cpu, _ = _load_study(str(path), "cpu", [])
        assert len(paper.fig11_bias) == 3 and len(paper.fig11_n_real) == len(paper.fig11_n_synthetic) == 10
        assert cpu.reps < paper.reps
        return
    from madlab.specs import load_spec
    from madlab.core.errors import DatasetError

    cpu = load_spec(path, preset="cpu")
    assert cpu.runs
    try:  # paper scale needs the full datasets (MNIST IDX files, FFHQ), which this machine may lack
        paper = load_spec(path)
    except DatasetError as exc:
        assert raw["dataset"]["name"] in str(exc)
        return
    assert sum(r.config.loop.generations for r in cpu.runs) <= sum(r.config.loop.generations for r in paper.runs)
