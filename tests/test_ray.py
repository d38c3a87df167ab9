"""Fault tolerance through Ray: killed actors, a killed driver, failing runs, resource pools.

Every test compares against the table of an uninterrupted in-process run with the same seeds:
whatever dies, the final table must hold the same rows and values, each exactly once.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from madlab.config import build_spec
from madlab.errors import MadlabError
from madlab.runner import Runner, parse_faults
from madlab.table import read_table

from conftest import gaussian_spec

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent


def quiet():
    return open(os.devnull, "w")


def sweep(generations=5, seeds=(0, 1, 2, 3), **loop):
    spec = gaussian_spec(generations=generations, **loop)
    spec["sweep"] = {"seed": list(seeds)}
    return spec


def run(spec, out, use_ray=True, **kw):
    summary = Runner(build_spec(spec), str(out), use_ray=use_ray, stream=quiet(), **kw).run()
    return summary, read_table(out)


def assert_no_duplicates(table):
    assert table.groupby(["run_id", "generation", "metric"]).size().max() == 1


def done_files(out):
    return sorted(Path(out).glob("runs/*/gen-*/DONE"))


def test_actor_killed_mid_sweep_gives_the_uninterrupted_table(tmp_path, monkeypatch, ray_session):
    spec = sweep()
    _, reference = run(spec, tmp_path / "ref", use_ray=False)
    monkeypatch.setenv("MADLAB_FAULT", "kill:*:3")  # every run's worker process dies before generation 3
    summary, table = run(spec, tmp_path / "killed")
    assert not summary.failed
    markers = sorted((tmp_path / "killed" / "runs").glob("*/.fault-kill-3"))
    assert len(markers) == 4  # the kill really happened, once per run
    # exact: same path — killed runs resume from stored generations; Ray and in-process use the same thread count
    pd.testing.assert_frame_equal(reference, table)
    assert_no_duplicates(table)


def test_run_that_raises_is_recorded_failed_and_the_rest_complete(tmp_path, monkeypatch, ray_session):
    spec = sweep(generations=4, seeds=(0, 1, 2))
    monkeypatch.setenv("MADLAB_FAULT", "raise:seed=1-*:2")
    summary, table = run(spec, tmp_path)
    assert [o.run_id.startswith("seed=1-") for o in summary.failed] == [True]
    failed = table[table.metric == "failed"]
    assert len(failed) == 1 and failed.generation.tolist() == [2] and failed.seed.tolist() == [1]
    assert "injected failure at generation 2" in failed.error.iloc[0]
    assert (table[table.seed == 1].status == "failed").all()
    ok = table[(table.seed != 1) & (table.metric == "w2")]
    assert sorted(ok.groupby("seed").generation.max().tolist()) == [4, 4]
    assert table[(table.seed == 1) & (table.metric == "w2")].generation.tolist() == [1]  # kept what was done
    # failures are not transient within a sweep, but running again retries the failed run
    monkeypatch.delenv("MADLAB_FAULT")
    summary, table = run(spec, tmp_path)
    _, reference = run(spec, tmp_path / "ref", use_ray=False)
    assert not summary.failed
    # exact: same path — the retried run redoes the same operations; Ray and in-process use the same thread count
    pd.testing.assert_frame_equal(reference, table)


def test_driver_killed_with_sigkill_resumes_to_the_same_table(tmp_path, write_spec, ray_session):
    spec = sweep(generations=6)
    path = write_spec(spec)
    _, reference = run(spec, tmp_path / "ref", use_ray=False)
    out = tmp_path / "out"
    address = ray_session.get_runtime_context().gcs_address
    env = {**os.environ, "MADLAB_FAULT": "sleep:*:0.4", "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-m", "madlab", "run", str(path), "--out", str(out),
                               "--address", address], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(done_files(out)) < 4 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == -signal.SIGKILL
    before = {p: p.stat().st_mtime_ns for p in done_files(out)}
    assert 4 <= len(before) < 24, "the driver must die mid-sweep"
    assert not (out / "metrics.parquet").exists()
    summary, table = run(spec, out)
    assert not summary.failed
    # exact: same path — a resume after the driver died continues from stored generations
    pd.testing.assert_frame_equal(reference, table)
    assert_no_duplicates(table)
    # published generations were trusted, not recomputed
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in before.items())


def test_runs_with_different_resources_get_their_own_pools(tmp_path, ray_session):
    spec = sweep(generations=3, seeds=(0, 1))
    spec["sweep"]["resources.num_cpus"] = [1.0, 0.5]
    _, reference = run(spec, tmp_path / "ref", use_ray=False)
    summary, table = run(spec, tmp_path / "ray")
    assert not summary.failed and table.run_id.nunique() == 4
    # exact: same path — compute_threads gives max(1, int(num_cpus)) = 1 thread for 1.0 and 0.5 CPUs, in and out of Ray
    pd.testing.assert_frame_equal(reference, table)


def test_impossible_resources_are_refused_before_anything_is_written(tmp_path, ray_session):
    spec = sweep(generations=2, seeds=(0,))
    spec["resources"] = {"num_gpus": 1}
    with pytest.raises(MadlabError, match="resources: a run asks for num_cpus=1, num_gpus=1"):
        Runner(build_spec(spec), str(tmp_path / "out"), stream=quiet()).run()
    assert not (tmp_path / "out").exists()


def test_fault_spec_is_validated():
    assert [f.mode for f in parse_faults("kill:*:3; raise:seed=1,bias=0.5-*:2")] == ["kill", "raise"]
    with pytest.raises(MadlabError, match="MADLAB_FAULT"):
        parse_faults("explode:*:3")


def test_cli_run_on_an_object_store_uri(tmp_path, write_spec, cli):
    """memory:// is per process, so this one runs without Ray; file:// goes through the same layer."""
    spec = sweep(generations=2, seeds=(0, 1))
    path = write_spec(spec)
    code, out, _ = cli("run", path, "--out", "memory://madlab-cli/out", "--no-ray")
    assert code == 0 and "table: memory:///madlab-cli/out/metrics.parquet" in out
    code, out, _ = cli("run", path, "--out", f"file://{tmp_path}/f", "--no-ray")
    assert code == 0
    # exact: same path — the same runs; only the store (memory:// vs file://) differs
    pd.testing.assert_frame_equal(read_table("memory://madlab-cli/out"), read_table(tmp_path / "f"))
    code, _, err = cli("run", path, "--out", "nosuchscheme://x", "--no-ray")
    assert code == 2 and "--out nosuchscheme://x" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_run_that_always_kills_its_worker_fails_alone(tmp_path, monkeypatch, ray_session):
    """An actor lost for good: its batch-mates are retried alone and finish; the poison run fails."""
    spec = sweep(generations=3, seeds=tuple(range(8)))
    _, reference = run(spec, tmp_path / "ref", use_ray=False)
    monkeypatch.setenv("MADLAB_FAULT", "crash:seed=2-*:2")
    monkeypatch.setenv("MADLAB_MAX_RESTARTS", "1")
    summary, table = run(spec, tmp_path / "out", workers=1)  # one worker: cheap runs go two to a unit
    assert [o.run_id.split("-")[0] for o in summary.failed] == ["seed=2"]
    assert "worker died repeatedly" in summary.failed[0].error
    same = [c for c in reference.columns if c not in ("status", "error")]  # dtype differs once a run failed
    # exact: same path — per-run folders (no batching): the surviving runs run the same operations
    pd.testing.assert_frame_equal(reference[reference.seed != 2][same].reset_index(drop=True),
                                  table[table.seed != 2][same].reset_index(drop=True))
    assert (table[table.seed != 2].status == "ok").all()
    assert table[(table.seed == 2) & (table.metric == "failed")].generation.tolist() == [2]
