"""`tracking:` and `--track`: every bad input is one line, exit 2, at validate time, nothing written."""
from __future__ import annotations

import pytest

from madlab.core.errors import ConfigError
from madlab.tracking import SINKS, SinkEntry, merge_targets, parse_targets
from tracking_common import sweep_spec


def test_defaults_resolve_under_the_results_folder(tmp_path):
    out = str(tmp_path / "out")
    targets = {t.name: t for t in parse_targets(["mlflow", "tensorboard", {"name": "wandb", "project": "p"}], out)}
    assert targets["mlflow"].uri == f"sqlite:///{tmp_path}/out/mlflow.db"  # sqlite:////abs: an absolute path
    assert targets["tensorboard"].uri == f"{tmp_path}/out/tensorboard"
    assert targets["wandb"].uri == out and targets["wandb"].options == {"project": "p"}
    assert parse_targets(["mlflow=http://tracker:5000"], out)[0].uri == "http://tracker:5000"
    assert parse_targets([f"mlflow=sqlite:///{tmp_path}/m.db"], out)[0].uri == f"sqlite:///{tmp_path}/m.db"


def test_command_line_replaces_the_spec_entry_of_its_name(tmp_path):
    spec = parse_targets(["mlflow", "tensorboard"], str(tmp_path))
    cli = parse_targets([f"mlflow=sqlite:///{tmp_path}/other.db"], str(tmp_path), where="--track")
    merged = merge_targets(spec, cli)
    assert [t.name for t in merged] == ["tensorboard", "mlflow"] and merged[1].uri.endswith("other.db")


@pytest.mark.parametrize("entries, needle", [
    (["neptune"], "unknown tracker 'neptune' (known: mlflow, tensorboard, wandb)"),
    (["mlflow=ftp://host/x"], "not a tracking URI"),
    (["mlflow=sqlite:///{tmp}/no/such/folder/m.db"], "cannot write under"),
    (["mlflow=http://"], "names a host"),
    ([{"name": "wandb", "mode": "loud"}], "wandb.mode: 'loud'"),
    ([{"name": "wandb", "colour": "red"}], "unknown key 'colour'"),
    (["tensorboard=s3://bucket/tb"], "must be a local folder"),
    (["mlflow", "mlflow"], "listed twice"),
    ([42], "each entry is a tracker name"),
    ([{"name": "mlflow", "grids": "yes"}], "mlflow.grids: must be true or false"),
    ([{"name": "wandb", "grids": True}], "unknown key 'grids'"),
])
def test_bad_entries_name_the_problem(tmp_path, entries, needle):
    (tmp_path / "no").write_text("a file where a folder should be")
    entries = [e.replace("{tmp}", str(tmp_path)) if isinstance(e, str) else e for e in entries]
    with pytest.raises(ConfigError) as info:
        parse_targets(entries, str(tmp_path / "out"))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_remote_results_folder_needs_a_tracker_location():
    with pytest.raises(ConfigError, match="not local; give the tracker a location"):
        parse_targets(["mlflow"], "s3://bucket/results")
    assert parse_targets(["mlflow=http://tracker:5000"], "s3://bucket/results")[0].uri == "http://tracker:5000"


def test_missing_extra_is_refused_at_validate_time(cli, write_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(SINKS, "mlflow", SinkEntry("x:Y", ("madlab_no_such_module",), "mlflow", "a URI"))
    out = tmp_path / "out"
    for command in ("validate", "run"):
        code, stdout, stderr = cli(command, write_spec(sweep_spec()), "--out", out, "--track", "mlflow")
        assert code == 2 and stdout == ""
        assert stderr.strip() == ("madlab: error: --track: mlflow needs the 'madlab_no_such_module' package, "
                                  "not installed here: pip install 'madlab[mlflow]'")
    assert not out.exists()  # nothing written


def test_spec_key_and_cli_errors_exit_2_before_anything_is_written(cli, write_spec, tmp_path):
    out = tmp_path / "out"
    spec = write_spec(sweep_spec(tracking=["tensorboard", {"name": "nope"}]))
    code, _, stderr = cli("run", spec, "--out", out, "--no-ray")
    assert code == 2 and stderr.strip() == ("madlab: error: tracking: unknown tracker 'nope' "
                                            "(known: mlflow, tensorboard, wandb)")
    code, _, stderr = cli("run", write_spec(sweep_spec()), "--out", out, "--no-ray", "--track", "mlflow=bogus")
    assert code == 2 and "--track: mlflow: 'bogus': not a tracking URI" in stderr
    code, _, stderr = cli("track", tmp_path, "--to", "nope")
    assert code == 2 and "--to: unknown tracker 'nope'" in stderr
    assert not out.exists()


def test_validate_names_the_trackers(cli, write_spec, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = cli("validate", write_spec(sweep_spec(tracking=["tensorboard"])), "--out", out)
    assert code == 0 and f"tracking: tensorboard ({out}/tensorboard)" in stdout
    assert not out.exists()


def test_backfill_refuses_a_folder_that_is_not_a_results_folder(cli, tmp_path):
    code, _, stderr = cli("track", tmp_path, "--to", "tensorboard")
    assert code == 2 and "not a madlab results folder" in stderr and not (tmp_path / "tensorboard").exists()
