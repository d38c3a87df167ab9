"""Multi-node behaviour on a real Ray cluster of several raylets (``ray.cluster_utils.Cluster``).

Each scenario runs in its own process (tests/cluster_scenarios.py: a driver joins one cluster, and
this session already has its shared local Ray instance); the test then checks the results folder
against an uninterrupted in-process run with the same seeds, as tests/test_ray.py does for killed
worker processes on one node. Node resources are logical (``num_gpus`` on a machine without GPUs).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from madlab.specs import build_spec
from madlab.runner import Runner
from madlab.store.storage import RunStore
from madlab.store.table import read_table

from conftest import gaussian_spec

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "cluster_scenarios.py"


def scenario(name: str, spec: dict, tmp_path: Path, timeout: float = 240, **env) -> dict:
    spec_path = tmp_path / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / name
    proc = subprocess.Popen([sys.executable, str(SCENARIOS), name, str(spec_path), str(out)],
                            env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the cluster's raylets go with it
        log, _ = proc.communicate()
        pytest.fail(f"scenario {name} did not finish in {timeout}s:\n{log[-3000:]}")
    result = tmp_path / f"{name}.scenario.json"
    assert proc.returncode == 0 and result.is_file(), log[-3000:]
    return json.loads(result.read_text())


def reference(spec: dict, out: Path) -> pd.DataFrame:
    Runner(build_spec(spec), str(out), use_ray=False, stream=open(os.devnull, "w")).run()
    return read_table(out)


def sweep(generations: int, seeds, **extra) -> dict:
    spec = gaussian_spec(generations=generations)
    spec["sweep"] = {"seed": list(seeds)}
    spec.update(extra)
    return spec


def test_losing_a_node_mid_sweep_gives_the_uninterrupted_table_and_a_new_node_is_used(tmp_path):
    spec = sweep(12, range(4))
    result = scenario("node_loss", spec, tmp_path, MADLAB_FAULT="sleep:*:0.5")
    assert result["summary"]["failed"] == {}
    assert 2 <= result["done_at_loss"] < result["total"], "the node must be lost mid-sweep"
    # exact: same path — the lost node's runs resume from their stored generations on this same machine
    pd.testing.assert_frame_equal(reference(spec, tmp_path / "ref"), read_table(tmp_path / "node_loss"))
    table = read_table(tmp_path / "node_loss")
    assert table.groupby(["run_id", "generation", "metric"]).size().max() == 1
    nodes = result["nodes"]
    assert result["added"] in nodes.values(), "the node added mid-sweep ran work"
    assert result["doomed"] not in nodes.values(), "the runs on the lost node finished elsewhere"


@pytest.mark.slow
def test_runs_no_remaining_node_can_host_wait_then_fail_with_one_line(tmp_path):
    spec = sweep(10, [0])
    spec["sweep"] = {"resources.num_gpus": [0, 1, 2]}
    result = scenario("unplaceable", spec, tmp_path, MADLAB_FAULT="sleep:*:0.3", MADLAB_PLACEMENT_TIMEOUT_S="4")
    failed = result["summary"]["failed"]
    assert sorted(k.split("-")[0] for k in failed) == ["num_gpus=1", "num_gpus=2"]
    for run_id, error in failed.items():
        assert error.startswith("resources: no node of the cluster has num_cpus=1, num_gpus=")
        assert "after waiting 4s (MADLAB_PLACEMENT_TIMEOUT_S)" in error and "\n" not in error
    assert "no alive node has num_cpus=1, num_gpus=2" in result["log"]  # it said it was waiting
    assert result["seconds_after_loss"] < 60  # gave up, did not hang
    out = tmp_path / "unplaceable"
    table = read_table(out)
    assert (table[table.num_gpus == 0].status == "ok").all()
    assert table[(table.num_gpus == 0) & (table.metric == "w2")].generation.max() == 10
    lost = next(k for k in failed if k.startswith("num_gpus=1"))
    assert RunStore(out / "runs" / lost).last_done() >= 2  # what the lost node published is kept


@pytest.mark.slow  # ~40-70 s of Ray cluster start-up; run with -m slow (the default suite keeps node loss)
def test_four_quarter_gpu_tasks_share_one_logical_gpu_and_see_their_devices(tmp_path):
    result = scenario("fractional", {}, tmp_path)
    quarter = sorted(result["quarter"], key=lambda q: q["window"][0])
    first, fifth = quarter[:4], quarter[4]
    assert max(q["window"][0] for q in first) < min(q["window"][1] for q in first)  # four held the GPU at once
    assert fifth["window"][0] >= min(q["window"][1] for q in first) - 0.5  # the fifth waited for a share
    assert len({q["pid"] for q in first}) == 4
    assert all(q["gpu_ids"] == ["0"] and q["cuda_visible_devices"] == "0" for q in quarter)
    whole = result["whole"]
    assert sorted(w["cuda_visible_devices"] for w in whole) == ["0", "1"]  # a GPU each, as Ray assigned
    assert all([w["cuda_visible_devices"]] == w["gpu_ids"] for w in whole)


@pytest.mark.slow
def test_four_quarter_gpu_runs_run_concurrently_through_the_runner(tmp_path):
    spec = sweep(4, range(4), resources={"num_gpus": 0.25, "num_cpus": 0.5})
    result = scenario("fractional_sweep", spec, tmp_path, MADLAB_FAULT="sleep:*:3")
    assert result["summary"]["failed"] == {}
    # exact: same path — fractional-GPU runs on CPU run the same operations as the reference
    pd.testing.assert_frame_equal(reference(spec, tmp_path / "ref"), read_table(tmp_path / "fractional_sweep"))
    windows = list(result["windows"].values())
    assert len(windows) == 4
    assert max(start for start, _ in windows) < min(end for _, end in windows)  # all four ran at the same time
    assert set(result["nodes"].values()) == {result["head"]}


def test_a_run_asking_for_more_gpus_than_any_node_has_is_refused_locally(tmp_path, ray_session):
    """The local instance has no GPU: refused before anything is written (per node, not in total)."""
    from madlab.core.errors import MadlabError
    from madlab.runner.placement import capacity

    assert capacity((1, 2, None), [{"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}]) == 0  # 2 GPUs in total, 1 per node
    assert capacity((1, 0.25, None), [{"CPU": 4, "GPU": 1}, {"CPU": 1, "GPU": 1}]) == 5
    spec = sweep(2, [0], resources={"num_gpus": 2})
    with pytest.raises(MadlabError, match="resources: a run asks for num_cpus=1, num_gpus=2 but the local Ray"):
        Runner(build_spec(spec), str(tmp_path / "out"), stream=open(os.devnull, "w")).run()
    assert not (tmp_path / "out").exists()
