"""CLI behaviour and bad input: exit 2, one line naming the key, nothing written."""
import pandas as pd
import pytest
import yaml

from madlab.table import BASE_COLUMNS

from conftest import gaussian_spec


def test_validate_accepts_the_quickstart(cli):
    code, out, err = cli("validate", "loops/quickstart.yaml")
    assert code == 0 and "66 run(s)" in out and err == ""


def test_generators_lists_shipped_plugins(cli):
    code, out, _ = cli("generators")
    names = {line.split()[0] for line in out.splitlines()}
    assert code == 0 and {"gaussian", "gmm", "ddpm", "gan", "flow"} <= names


def test_run_writes_tidy_table_and_run_folders(cli, write_spec, tmp_path):
    spec = gaussian_spec(generations=3)
    spec["sweep"] = {"loop.bias": [1.0, 0.5], "seed": [0, 1]}
    out = tmp_path / "out"
    code, stdout, _ = cli("run", write_spec(spec), "--out", out, "--no-ray")
    assert code == 0 and f"table: {out}/metrics.parquet" in stdout
    table = pd.read_parquet(out / "metrics.parquet")
    assert set(BASE_COLUMNS) <= set(table.columns)
    assert {"n_train_real", "n_train_synthetic", "synthetic_from"} <= set(table.columns)
    assert table.run_id.nunique() == 4 and sorted(table.generation.unique()) == [1, 2, 3]
    assert table.groupby(["run_id", "generation", "metric"]).size().max() == 1
    run_dirs = sorted((out / "runs").iterdir())
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        assert (run_dir / "config.json").is_file()
        assert all((run_dir / f"gen-000{t}" / "DONE").is_file() for t in (1, 2, 3))
    assert (out / "run.json").is_file()


def test_set_overrides_and_sweep_axes(cli, write_spec, tmp_path):
    out = tmp_path / "o"
    code, _, _ = cli("run", write_spec(gaussian_spec()), "--out", out, "--no-ray",
                     "--set", "loop.generations=2", "--set", "sweep.loop.bias=[0.9, 0.6]")
    assert code == 0
    table = pd.read_parquet(out / "metrics.parquet")
    assert sorted(table.bias.unique()) == [0.6, 0.9] and table.generation.max() == 2


@pytest.mark.fp_exact
def test_run_through_ray(cli, write_spec, tmp_path, ray_session):
    spec = gaussian_spec(generations=3)
    spec["sweep"] = {"seed": [0, 1, 2]}
    out_ray, out_local = tmp_path / "ray", tmp_path / "local"
    assert cli("run", write_spec(spec), "--out", out_ray)[0] == 0
    assert cli("run", write_spec(spec), "--out", out_local, "--no-ray")[0] == 0
    # exact: same path — Ray workers and --no-ray run the same operations with the same thread count (compute_threads)
    pd.testing.assert_frame_equal(pd.read_parquet(out_ray / "metrics.parquet"),
                                  pd.read_parquet(out_local / "metrics.parquet"))


BAD = [
    ("malformed YAML", "name: x\nloop: {scheme: [unclosed\n", "malformed YAML"),
    ("unknown top-level key", {"colour": "red"}, "colour: unknown top-level key"),
    ("unknown loop key", {"loop": {"biass": 0.5}}, "loop.biass: unknown key"),
    ("bias above 1", {"loop": {"bias": 1.5}}, "loop.bias:"),
    ("bias below 0", {"loop": {"bias": -0.1}}, "loop.bias:"),
    ("wrong type", {"loop": {"generations": "ten"}}, "loop.generations:"),
    ("unknown scheme", {"loop": {"scheme": "replace"}}, "loop.scheme:"),
    ("covariance from 1 sample", {"loop": {"n_synthetic": 1}}, "loop.n_synthetic:"),
    ("no real data", {"loop": {"n_real": 0}}, "loop.n_real:"),
    ("fresh-real without real", {"loop": {"scheme": "fresh-real", "n_initial": 10, "n_real": 0}}, "loop.n_real:"),
    ("unknown generator", {"generator": {"name": "vae"}}, "generator.name: unknown generator 'vae'"),
    ("diffusion at infinite guidance", {"generator": {"name": "ddpm", "preset": "cpu"}, "loop": {"bias": 0.0}},
     "loop.bias: generator 'ddpm' needs λ > 0"),
    ("unknown dataset", {"dataset": {"name": "cifar"}}, "dataset.name: unknown dataset 'cifar'"),
    ("bad dataset param", {"dataset": {"name": "gaussian", "dim": 0}}, "dataset.dim:"),
    ("unknown generator param", {"generator": {"name": "gaussian", "rank": 3}}, "generator.rank: unknown key"),
    ("memory outside fresh-real", {"loop": {"memory": 3}}, "loop.memory:"),
    ("k too large", {"metrics": {"k": 40}}, "metrics.k:"),
    ("KID subset larger than the sample", {"metrics": {"kid_subset_size": 100}}, "metrics.kid_subset_size:"),
    ("sweep not a list", {"sweep": {"seed": 3}}, "sweep.seed:"),
    ("sweep value out of range", {"sweep": {"loop.bias": [1.0, 2.0]}}, "loop.bias:"),
]


def _merge(base, patch):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k not in ("dataset", "generator"):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


@pytest.mark.parametrize("label,patch,needle", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_exits_2_with_one_line(cli, tmp_path, label, patch, needle, command):
    path = tmp_path / "bad.yaml"
    if isinstance(patch, str):
        path.write_text(patch)
    else:
        path.write_text(yaml.safe_dump(_merge(gaussian_spec(), patch)))
    out = tmp_path / "out"
    args = [command, path] + (["--out", out, "--no-ray"] if command == "run" else [])
    code, stdout, stderr = cli(*args)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and needle in stderr and "Traceback" not in stderr
    assert not out.exists()  # nothing half-written


def test_missing_config_file(cli, tmp_path):
    code, _, err = cli("run", tmp_path / "nope.yaml", "--no-ray", "--out", tmp_path / "o")
    assert code == 2 and "no such config file" in err and not (tmp_path / "o").exists()


def test_bad_override(cli, write_spec, tmp_path):
    code, _, err = cli("validate", write_spec(gaussian_spec()), "--set", "loop.bias")
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = cli("validate", write_spec(gaussian_spec()), "--set", "loop.bias=1.2")
    assert code == 2 and "loop.bias" in err


def test_unknown_preset(cli, write_spec):
    code, _, err = cli("validate", write_spec(gaussian_spec()), "--preset", "cpu")
    assert code == 2 and "--preset cpu" in err


def test_preset_applies_overrides(cli, write_spec):
    spec = gaussian_spec(generations=50)
    spec["presets"] = {"cpu": {"loop.generations": 2, "sweep.seed": [0, 1, 2]}}
    code, out, _ = cli("validate", write_spec(spec), "--preset", "cpu")
    assert code == 0 and "3 run(s), 6 generation(s)" in out


def test_linked_sweep_axis_replaces_components(cli, write_spec, tmp_path):
    spec = gaussian_spec(generations=2, n_real=60, n_synthetic=60)
    spec["sweep"] = {"model": [{"label": "g", "dataset": {"name": "gaussian", "dim": 3}, "generator": {"name": "gaussian"}},
                               {"label": "m", "dataset": {"name": "gmm25"}, "generator": {"name": "gmm", "n_components": 5}}]}
    out = tmp_path / "o"
    assert cli("run", write_spec(spec), "--out", out, "--no-ray")[0] == 0
    table = pd.read_parquet(out / "metrics.parquet")
    assert dict(table.groupby("model").dataset.first()) == {"g": "gaussian", "m": "gmm25"}
    assert "modes" in set(table[table.model == "m"].metric)


def test_sweep_list_is_a_union_of_products(cli, write_spec):
    spec = gaussian_spec(generations=3)
    spec["sweep"] = [{"loop.bias": [1.0, 0.8], "seed": [0, 1]},
                     {"model": [{"label": "mix", "dataset": {"name": "gmm25"},
                                 "generator": {"name": "gmm", "n_components": 4}, "loop": {"generations": 2}}]}]
    code, out, _ = cli("validate", write_spec(spec))
    assert code == 0 and "5 run(s), 14 generation(s)" in out
    code, out, _ = cli("validate", write_spec(spec), "--set", "loop.generations=1")
    assert code == 0 and "5 run(s), 5 generation(s)" in out  # --set wins over the linked value


def test_validate_opens_datasets_and_checks_their_size(cli, write_spec, tmp_path):
    spec = gaussian_spec()
    spec["dataset"] = {"name": "ffhq", "root": str(tmp_path / "no-such-folder"), "resolution": 8}
    spec["generator"] = {"name": "gan", "preset": "cpu"}
    code, _, err = cli("validate", write_spec(spec))
    assert code == 2 and "no-such-folder" in err and len(err.strip().splitlines()) == 1

    spec = gaussian_spec(scheme="fresh-real", generations=6, n_real=1000, n_initial=1000, n_synthetic=100)
    spec["dataset"] = {"name": "mnist5k"}
    spec["generator"] = {"name": "gan", "preset": "cpu"}
    out = tmp_path / "out"
    code, _, err = cli("run", write_spec(spec), "--out", out, "--no-ray")
    assert code == 2 and "loop.n_real: the loop draws 6000 real samples" in err and not out.exists()
