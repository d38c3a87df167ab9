"""Results on an object store (fsspec memory://, no rename): DONE written last is the only truth."""
import io
import uuid

import fsspec
import numpy as np
import pandas as pd
import pytest

from madlab.config import build_spec
from madlab.loop import Loop
from madlab.runner import Progress, Runner
from madlab.samples import Samples
from madlab.storage import Location, RunStore
from madlab.table import read_table

from conftest import gaussian_spec


def quiet():
    return io.StringIO()


def sweep():
    spec = gaussian_spec(scheme="fixed-real", generations=4, n_real=30, n_synthetic=30)
    spec["sweep"] = {"seed": [0, 1]}
    return spec


@pytest.fixture
def bucket():
    return f"memory://bucket-{uuid.uuid4().hex[:8]}/results"


def run(out, spec=None):
    Runner(build_spec(spec or sweep()), str(out), use_ray=False, stream=quiet()).run()
    return read_table(out)


def test_object_store_results_equal_local_ones(tmp_path, bucket):
    # exact: same path — the same runs; only the store differs
    pd.testing.assert_frame_equal(run(tmp_path), run(bucket))
    names = Location(bucket).glob("runs/*/gen-0001/*")
    assert sorted({n.rsplit("/", 1)[-1] for n in names}) == ["DONE", "samples.npz", "state.safetensors"]


def test_generation_without_done_is_not_trusted_and_is_redone(tmp_path, bucket):
    reference = run(tmp_path)
    run(bucket)
    spec = build_spec(sweep())
    store = RunStore(f"{bucket}/runs/{spec.runs[0].run_id}")
    fs = fsspec.filesystem("memory")
    # a writer killed after uploading generation 3's files but before its DONE ...
    fs.rm_file(f"{store.gen_dir(3)}/DONE")
    fs.rm_file(f"{store.gen_dir(4)}/DONE")
    # ... and a half-uploaded file left behind
    fs.pipe_file(f"{store.gen_dir(3)}/samples.npz", b"truncated")
    assert store.last_done() == 2
    # exact: same path — resumed from the stored generations on the same machine
    pd.testing.assert_frame_equal(reference, run(bucket))
    assert store.last_done() == 4 and store.samples(3).x.shape == (30, 2)


def test_interrupted_object_store_run_resumes(tmp_path, bucket):
    reference = run(tmp_path)
    spec = build_spec(sweep())
    for r in spec.runs:
        Loop(r.config, f"{bucket}/runs/{r.run_id}", cache_dir=str(tmp_path / "cache")).run(until=2)
    # exact: same path — resumed from the stored generations on the same machine
    pd.testing.assert_frame_equal(reference, run(bucket))


def test_publish_is_a_no_op_once_done(bucket):
    store = RunStore(f"{bucket}/runs/r")
    samples = Samples(np.zeros((3, 2), np.float32), None)
    store.publish(1, {"w": np.ones(2, np.float32)}, samples, {"generation": 1, "metrics": {"a": 1.0}}, image=False)
    store.publish(1, {"w": np.zeros(2, np.float32)}, samples, {"generation": 1, "metrics": {"a": 2.0}}, image=False)
    assert store.record(1)["metrics"] == {"a": 1.0} and store.state(1)["w"].tolist() == [1.0, 1.0]


def test_failure_marker_on_object_store(bucket):
    store = RunStore(f"{bucket}/runs/r")
    assert store.failure() is None
    store.mark_failed(3, "boom")
    assert store.failure() == {"generation": 3, "error": "boom"}
    store.clear_failure()
    assert store.failure() is None
    assert store.touch_marker("x") and not store.touch_marker("x")


def test_progress_reads_well_in_a_log():
    stream = io.StringIO()
    progress = Progress(total_runs=4, total_generations=40, stream=stream, every=3600)
    progress.update(0, 0, 0, force=True)
    assert not progress.due()  # a log gets at most one line per `every` seconds
    progress.update(2, 25, 1, force=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[1].startswith("[madlab] runs 2/4  generations 25/40  failed 1  elapsed 0m00s  eta ")
