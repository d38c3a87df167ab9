"""W&B sink, offline: the run files under DIR/wandb read back (history, summary, config, group)."""
from __future__ import annotations

import json

import pytest

from tracking_common import same_points, sweep_spec, table_points

pytest.importorskip("wandb")
from madlab.tracking.wandb_sink import read_run_files  # noqa: E402


@pytest.fixture(autouse=True)
def no_wandb_account(monkeypatch, tmp_path):
    """Nothing may reach W&B: no key, offline, W&B's own settings kept out of the home folder."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def wandb_runs(out) -> dict[str, list[dict]]:
    """{madlab run id: [the offline folders' contents, oldest first]}."""
    runs: dict = {}
    for folder in sorted((out / "wandb").glob("offline-run-*")):
        found = read_run_files(str(folder))
        runs.setdefault(found["run"]["config"]["madlab"]["run_id"], []).append(found)
    return runs


def wandb_points(runs) -> dict:
    points: dict = {}
    for run_id, sessions in runs.items():
        for session in sessions:
            for row in session["history"]:
                for key, value in row.items():
                    if not key.startswith("_"):
                        points.setdefault((run_id, key), []).append((row["_step"], value))
    return {key: sorted(values) for key, values in points.items()}


def test_offline_history_summary_and_config(cli, write_spec, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = cli("run", write_spec(sweep_spec(generations=3)), "--out", out, "--no-ray", "--track", "wandb")
    assert code == 0, stdout
    runs = wandb_runs(out)
    assert len(runs) == 4 and all(len(sessions) == 1 for sessions in runs.values())
    assert same_points(wandb_points(runs), table_points(out))
    table = table_points(out)
    for run_id, (session,) in runs.items():
        config = json.loads((out / "runs" / run_id / "config.json").read_text())["config"]
        assert session["run"]["name"] == run_id and session["run"]["group"].startswith("t-")
        assert session["run"]["config"]["loop"] == config["loop"] and session["exit_code"] == 0
        assert session["summary"]["w2"] == table[run_id, "w2"][-1][1]  # the last generation's value
    assert len({s[0]["run"]["group"] for s in runs.values()}) == 1  # grouped by sweep


def test_failed_run_and_resume_without_duplicates(cli, write_spec, tmp_path, monkeypatch):
    out, spec = tmp_path / "out", write_spec(sweep_spec(generations=3))
    monkeypatch.setenv("MADLAB_FAULT", "raise:bias=1.0,seed=1-*:2")
    assert cli("run", spec, "--out", out, "--no-ray", "--track", "wandb")[0] == 1
    (failed,) = [s for s in wandb_runs(out).values() if s[0]["exit_code"] == 1]
    assert "generation 2" in failed[0]["summary"]["madlab/error"]
    monkeypatch.delenv("MADLAB_FAULT")
    assert cli("run", spec, "--out", out, "--no-ray", "--track", "wandb")[0] == 0
    runs = wandb_runs(out)
    (resumed,) = [s for s in runs.values() if len(s) == 2]  # the one resumed run: a second session, same id
    assert resumed[0]["run"]["id"] == resumed[1]["run"]["id"] and resumed[1]["exit_code"] == 0
    assert [row["_step"] for row in resumed[1]["history"]] == [2, 3]
    assert same_points(wandb_points(runs), table_points(out))
