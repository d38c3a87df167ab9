"""Every promise checked before anything runs, and every run folder self-describing.

Bad input that only a generator's constructor, the metric evaluator or the feature extractor used
to notice (after a generation had trained) is refused by ``madlab validate`` and at the start of
``madlab run`` — with and without Ray — in one line naming the key, exit code 2, and no results
folder. Each run's ``config.json`` holds the resolved generator parameters and library versions;
the run id covers them, and a resume over a different stored record is refused.
"""
from __future__ import annotations

import json

import pytest

from madlab import specs as config_module
from madlab.specs import load_spec
from madlab.core.errors import ConfigError
from test_plugin_example import installed_plugin  # noqa: F401  (fixture)

MNIST = {"name": "mnist5k"}
LOOP = {"scheme": "fully-synthetic", "generations": 2, "n_real": 200, "n_synthetic": 200}


def _spec(dataset, generator, metrics=None, loop=None, sweep=None) -> dict:
    spec = {"name": "v", "dataset": dataset, "generator": generator, "loop": {**LOOP, **(loop or {})}}
    if metrics:
        spec["metrics"] = metrics
    if sweep:
        spec["sweep"] = sweep
    return spec


BAD = [
    ("GAN pac above batch_size", _spec(MNIST, {"name": "gan", "pac": 128, "conditional": False}), "generator.pac:"),
    ("GAN pac with a conditional GAN", _spec(MNIST, {"name": "gan", "pac": 2, "conditional": True}), "generator.pac:"),
    ("DDPM norm_groups not dividing the widths", _spec(MNIST, {"name": "ddpm", "norm_groups": 7}),
     "generator.norm_groups:"),
    ("DDPM too many resolutions for 28x28", _spec(MNIST, {"name": "ddpm", "channels": [8, 8, 8, 8]}),
     "generator.channels:"),
    ("missing Inception weights file", _spec(MNIST, {"name": "ddpm"}, {"extractor": "inception",
                                                                        "weights_path": "/no/such/inception.pth"}),
     "metrics.weights_path:"),
    ("missing LeNet weights file", _spec(MNIST, {"name": "ddpm"}, {"weights_path": "/no/such/lenet.safetensors"}),
     "metrics.weights_path:"),
    ("unknown extractor", _spec(MNIST, {"name": "ddpm"}, {"extractor": "clip"}), "metrics.extractor:"),
    ("unknown image metric", _spec(MNIST, {"name": "ddpm"}, {"names": ["fid", "fdi"]}), "metrics.names:"),
    ("a gmm25 metric on another dataset", _spec({"name": "gaussian", "dim": 2}, {"name": "gaussian"},
                                                {"names": ["w2", "modes"]}), "metrics.names:"),
    ("a Gaussian-generator metric for the GMM", _spec({"name": "gmm25"}, {"name": "gmm"},
                                                       {"names": ["trace_cov"]}), "metrics.names:"),
    ("an extractor for vector data", _spec({"name": "gaussian", "dim": 2}, {"name": "gaussian"},
                                           {"extractor": "lenet-mnist"}), "metrics.extractor:"),
    ("one bad run of a sweep", _spec(MNIST, {"name": "gan", "conditional": False}, sweep={"generator.pac": [1, 128]}),
     "generator.pac:"),
]


@pytest.mark.parametrize("label,spec,needle", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["validate", "run --no-ray", "run"])
def test_bad_input_is_refused_before_anything_runs(cli, write_spec, tmp_path, monkeypatch, label, spec, needle,
                                                   command):
    monkeypatch.setenv("MADLAB_OFFLINE", "1")
    out = tmp_path / "out"
    args = command.split() + [write_spec(spec)] + (["--out", out] if command != "validate" else [])
    code, stdout, stderr = cli(*args)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and needle in stderr and "Traceback" not in stderr, stderr
    assert not out.exists()  # nothing written, not even the results folder


def test_the_sweep_error_names_the_run(cli, write_spec):
    spec = _spec(MNIST, {"name": "gan", "conditional": False}, sweep={"generator.pac": [1, 128]})
    _, _, stderr = cli("validate", write_spec(spec))
    assert "[run pac=128]" in stderr


def test_flow_refuses_odd_image_sides_at_validate_time():
    from madlab_generators.flow import FlowGenerator

    params = FlowGenerator.resolve_params(FlowGenerator.Params(), data_shape=(1, 7, 7))
    with pytest.raises(ConfigError, match="generator.levels"):
        FlowGenerator.check(params, data_shape=(1, 7, 7))


def test_example_plugin_constraints_are_checked_at_validate_time(installed_plugin, cli, write_spec, tmp_path):
    spec = _spec({"name": "gaussian", "dim": 3}, {"name": "kde", "max_points": 3})
    code, _, stderr = cli("run", write_spec(spec), "--out", tmp_path / "out", "--no-ray")
    assert code == 2 and "generator.max_points:" in stderr and not (tmp_path / "out").exists()
    spec["metrics"] = {"names": ["w2", "trace_cov"]}  # the Gaussian generator's metric, not the KDE's
    spec["generator"]["max_points"] = 100
    code, _, stderr = cli("validate", write_spec(spec))
    assert code == 2 and "metrics.names:" in stderr and "'trace_cov'" in stderr


# -- self-describing runs ------------------------------------------------------------------------

def _gan_spec() -> dict:
    return _spec({"name": "gmm25"}, {"name": "gan", "preset": "cpu"})


def test_resolved_parameters_enter_the_config_and_the_run_id(write_spec, monkeypatch):
    from madlab_generators.gan import GANGenerator

    run = load_spec(write_spec(_gan_spec())).runs[0]
    resolved = run.config.generator_resolved
    table = GANGenerator.Params.PRESETS["cpu"]["vector"]
    assert resolved["steps"] == table["steps"] and resolved["width"] == table["width"]
    assert resolved["lr"] == 1e-3  # the data-dependent default (2-D data), filled at validate time too

    edited = {**GANGenerator.Params.PRESETS, "cpu": {**GANGenerator.Params.PRESETS["cpu"],
                                                     "vector": {**table, "steps": table["steps"] + 1}}}
    monkeypatch.setattr(GANGenerator.Params, "PRESETS", edited)
    edited_run = load_spec(write_spec(_gan_spec())).runs[0]
    assert edited_run.config.generator_resolved["steps"] == table["steps"] + 1
    assert edited_run.run_id != run.run_id, "editing a preset table must give a new run id"


def test_a_changed_default_changes_the_run_id(write_spec, monkeypatch):
    from madlab_generators.gmm import GMMGenerator

    spec = _spec({"name": "gmm25"}, {"name": "gmm", "n_components": 25})
    before = load_spec(write_spec(spec)).runs[0].run_id
    field = GMMGenerator.Params.model_fields["max_iter"]
    monkeypatch.setattr(field, "default", field.default + 1)
    GMMGenerator.Params.model_rebuild(force=True)
    try:
        assert load_spec(write_spec(spec)).runs[0].run_id != before
    finally:
        monkeypatch.undo()
        GMMGenerator.Params.model_rebuild(force=True)


def test_workers_build_the_generator_from_the_resolved_parameters(write_spec, monkeypatch):
    """A worker whose preset table differs from the driver's (another node, another version) still
    builds the model the driver resolved and recorded."""
    from madlab_generators.gan import GANGenerator

    run = load_spec(write_spec(_gan_spec())).runs[0]
    monkeypatch.setattr(GANGenerator.Params, "PRESETS", {"cpu": {"vector": {}, "image": {}}})
    _, cls, params = config_module.make_components(run.config)
    assert params.model_dump(mode="json") == run.config.generator_resolved


def _run_folder(out):
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def test_config_json_records_resolved_params_and_versions(cli, write_spec, tmp_path):
    spec = _spec({"name": "gaussian", "dim": 2}, {"name": "gaussian"}, loop={"n_real": 20, "n_synthetic": 20})
    out = tmp_path / "out"
    assert cli("run", write_spec(spec), "--out", out, "--no-ray")[0] == 0
    record = json.loads((_run_folder(out) / "config.json").read_text())
    assert record["config"]["generator_resolved"] == {}
    assert {"madlab", "torch", "numpy", "diffusers", "normflows"} <= set(record["versions"])
    import numpy

    assert record["versions"]["numpy"] == numpy.__version__


@pytest.mark.parametrize("tamper,needle", [
    (lambda r: r["config"]["loop"].update(n_synthetic=21), "loop.n_synthetic 21 -> 20"),
    (lambda r: r["config"].update(generator_resolved={"steps": 5}), "generator_resolved.steps 5 -> null"),
    (lambda r: r["versions"].update(numpy="1.0.0"), "numpy 1.0.0 ->"),
], ids=["config", "resolved generator", "library version"])
def test_resume_over_a_different_stored_run_is_refused(cli, write_spec, tmp_path, tamper, needle):
    spec = _spec({"name": "gaussian", "dim": 2}, {"name": "gaussian"}, loop={"n_real": 20, "n_synthetic": 20})
    path, out = write_spec(spec), tmp_path / "out"
    assert cli("run", path, "--out", out, "--no-ray")[0] == 0
    config_json = _run_folder(out) / "config.json"
    record = json.loads(config_json.read_text())
    tamper(record)
    config_json.write_text(json.dumps(record))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, _, stderr = cli("run", path, "--out", out, "--no-ray")
    assert code == 2 and "cannot resume" in stderr and needle in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing rewritten


def test_an_unchanged_resume_is_accepted(cli, write_spec, tmp_path):
    spec = _spec({"name": "gaussian", "dim": 2}, {"name": "gaussian"}, loop={"n_real": 20, "n_synthetic": 20})
    path, out = write_spec(spec), tmp_path / "out"
    assert cli("run", path, "--out", out, "--no-ray")[0] == 0
    assert cli("run", path, "--out", out, "--no-ray")[0] == 0


def test_the_default_spec_validates_with_resolved_generators():
    spec = load_spec(None)
    neural = [r for r in spec.runs if r.config.generator["name"] in ("gan", "flow", "ddpm")]
    assert neural and all(r.config.generator_resolved.get("preset") for r in neural)
