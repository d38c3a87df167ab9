"""MLflow sink, read back with MLflow's client over the local store the sweep wrote (offline)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tracking_common import same_points, sweep_spec, table_points

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory):
    """An empty MLflow SQLite store with its tables built once (MLflow's migrations take seconds);
    each test copies it to where the sweep's store goes, and the sink opens it as it is."""
    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def store_at(migrated_store):
    def copy(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_store, path)
    return copy


def mlflow_runs(out, experiment: str = "t"):
    """(parent run, {madlab run id: child run}) in ``out/mlflow.db``."""
    client = mlflow.MlflowClient(f"sqlite:///{out}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("madlab.role") == "sweep"]
    assert len(parents) == 1
    children = {r.data.tags["madlab.run_id"]: r for r in runs if "madlab.run_id" in r.data.tags}
    return client, parents[0], children


def mlflow_points(client, children) -> dict:
    points = {}
    for run_id, run in children.items():
        for metric in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, metric)
            points[run_id, metric] = sorted((m.step, m.value) for m in history)
    return points


def test_runs_params_metrics_and_nesting(cli, write_spec, tmp_path, store_at):
    out = tmp_path / "out"
    store_at(out / "mlflow.db")
    code, stdout, _ = cli("run", write_spec(sweep_spec()), "--out", out, "--no-ray", "--track", "mlflow")
    assert code == 0, stdout
    client, parent, children = mlflow_runs(out)
    assert parent.info.status == "FINISHED" and parent.data.tags["madlab.results"] == str(out)
    assert len(children) == 4
    for run_id, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED" and run.info.run_name == run_id
        config = __import__("json").loads((out / "runs" / run_id / "config.json").read_text())["config"]
        assert run.data.params["loop.bias"] == str(config["loop"]["bias"])
        assert run.data.params["loop.scheme"] == "fully-synthetic" and run.data.params["seed"] == str(config["seed"])
        assert run.data.tags["scheme"] == "fully-synthetic" and run.data.tags["bias"] == str(config["loop"]["bias"])
        assert run.data.tags["seed"] == str(config["seed"]) and run.data.tags["generator"] == "gaussian"
    # every table row, step = generation, each once (the sink stores the table's double as is)
    assert same_points(mlflow_points(client, children), table_points(out))


def test_failure_marked_then_resume_continues_without_duplicates(cli, write_spec, tmp_path, monkeypatch, store_at):
    out, spec = tmp_path / "out", write_spec(sweep_spec())
    store_at(out / "mlflow.db")
    monkeypatch.setenv("MADLAB_FAULT", "raise:bias=0.8,seed=0-*:3")
    code, _, _ = cli("run", spec, "--out", out, "--no-ray", "--track", "mlflow")
    assert code == 1
    client, parent, children = mlflow_runs(out)
    failed = [r for r in children.values() if r.info.status == "FAILED"]
    table = pd.read_parquet(out / "metrics.parquet")
    reason = table[table.metric == "failed"].error.tolist()
    assert len(failed) == 1 and [failed[0].data.tags["madlab.error"]] == reason and "generation 3" in reason[0]
    assert failed[0].data.tags["madlab.generation"] == "2" and parent.info.status == "FAILED"

    monkeypatch.delenv("MADLAB_FAULT")
    code, _, _ = cli("run", spec, "--out", out, "--no-ray", "--track", "mlflow")
    assert code == 0
    client, parent, again = mlflow_runs(out)
    assert {r.info.run_id for r in again.values()} == {r.info.run_id for r in children.values()}  # the same runs
    assert all(r.info.status == "FINISHED" and "madlab.error" not in r.data.tags for r in again.values())
    assert parent.info.status == "FINISHED"
    assert same_points(mlflow_points(client, again), table_points(out))  # no step logged twice

    code, stdout, _ = cli("track", out, "--to", "mlflow")  # a back-fill over a complete tracker adds nothing
    assert code == 0 and "4 run(s), 16 generation(s) in the tracker: ok" in stdout
    assert same_points(mlflow_points(client, mlflow_runs(out)[2]), table_points(out))


def test_killed_and_resumed_sweep_logs_each_point_once(cli, write_spec, tmp_path, store_at):
    """The driver dies hard (os._exit, as a node would) at generation 4 of the last run, after the
    tracker has taken earlier generations (each generation sleeps 0.3 s: 4.5 s before the kill;
    the dispatcher flushes every 2 s); the resumed sweep's tracker holds the table's points, each once."""
    out, spec = tmp_path / "out", write_spec(sweep_spec(generations=5))
    store_at(out / "mlflow.db")
    command = [sys.executable, "-m", "madlab", "run", str(spec), "--out", str(out), "--no-ray", "--track", "mlflow"]
    env = {**os.environ, "MADLAB_FAULT": "sleep:*:0.3;kill:bias=0.8,seed=1-*:4"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == 17, killed.stderr
    client, _, before = mlflow_runs(out)
    assert sum(int(r.data.tags.get("madlab.generation", 0)) for r in before.values()) > 0  # something went in
    code, stdout, _ = cli(*command[3:])  # the resume, in this process (no fault set here)
    assert code == 0, stdout
    client, _, after = mlflow_runs(out)
    assert same_points(mlflow_points(client, after), table_points(out))


def test_backfill_to_a_given_sqlite_uri(cli, write_spec, tmp_path):  # this one builds its store: not copied
    out = tmp_path / "out"
    assert cli("run", write_spec(sweep_spec(generations=2)), "--out", out, "--no-ray")[0] == 0
    db = tmp_path / "elsewhere.db"
    code, stdout, _ = cli("track", out, "--to", f"mlflow=sqlite:///{db}")
    assert code == 0 and db.is_file() and not (out / "mlflow.db").exists()
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert len(runs) == 5  # the sweep's parent and its four runs


def test_grids_go_in_as_artifacts(tmp_path, store_at):
    import numpy as np
    from PIL import Image

    from madlab.tracking import Target
    from madlab.tracking.base import RunInfo, SweepInfo
    from madlab.tracking.mlflow_sink import MLflowSink

    run_dir = tmp_path / "runs" / "r"
    (run_dir / "gen-0001").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(run_dir / "gen-0001" / "grid.png")
    config = {"loop": {"scheme": "s", "bias": 1.0}, "seed": 0, "generator": {"name": "g"}, "dataset": {"name": "d"}}
    run = RunInfo("r", config, {}, 1, str(run_dir))
    store_at(tmp_path / "m.db")
    target = Target("mlflow", f"sqlite:///{tmp_path}/m.db", {"grids": True})
    sink = MLflowSink(target, SweepInfo("s", str(tmp_path), (run,)))
    assert sink.start() == {}
    sink.log(run, {1: {"fid": 1.0}})
    sink.end(run, "ok", None)
    mlflow_id = sink.children["r"][0]
    assert [a.path for a in sink.client.list_artifacts(mlflow_id, "grids/gen-0001")] == ["grids/gen-0001/grid.png"]
    assert (tmp_path / "mlflow-artifacts").is_dir()  # beside the database, not in the working directory
