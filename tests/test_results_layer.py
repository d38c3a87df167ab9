"""The results-folder layer (madlab.store.storage): atomic writes, the DONE rule, the last-generation
scan and the sample codec, on a local folder and on an object store (fsspec memory://)."""
import os
import uuid

import numpy as np
import pandas as pd
import pytest

from madlab.core.image import quantise, to_float, to_uint8
from madlab.core.samples import Samples
from madlab.store.storage import DONE, Location, RunStore, decode_samples, encode_samples, last_done


@pytest.fixture(params=["local", "memory"])
def where(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "results")
    return f"memory://layer-{uuid.uuid4().hex[:8]}/results"


def files(tag: bytes) -> dict[str, bytes]:
    return {"a.bin": tag * 10, "b.bin": tag * 3}


def test_write_bytes_replaces_atomically_and_leaves_no_temp_file(where):
    loc = Location(where)
    loc.write_bytes("x/y.json", b"old")
    loc.write_bytes("x/y.json", b"new")
    assert loc.read_bytes("x/y.json") == b"new"
    assert loc.fs.ls("x", detail=False) == ["x/y.json"] or sorted(loc.glob("x/*")) == ["x/y.json"]
    assert [p for p in loc.fs.find("") if "tmp" in p] == []


def test_failed_local_write_keeps_the_old_file(tmp_path, monkeypatch):
    loc = Location(tmp_path)
    loc.write_bytes("t.json", b"old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        loc.write_bytes("t.json", b"new")
    assert (tmp_path / "t.json").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_local_generation_appears_whole_in_one_rename_with_done_inside(tmp_path, monkeypatch):
    loc = Location(tmp_path)
    seen = []
    rename = os.rename

    def spy(src, dst):
        seen.append((sorted(os.listdir(src)), os.path.exists(dst)))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    assert loc.publish("gen-0001", files(b"1"), b'{"generation": 1}')
    assert seen == [(["DONE", "a.bin", "b.bin"], False)]  # complete, DONE included, final absent until then
    assert sorted(os.listdir(tmp_path)) == ["gen-0001"]  # no temp folder left


def test_object_store_puts_done_last(monkeypatch):
    loc = Location(f"memory://layer-{uuid.uuid4().hex[:8]}/r")
    order = []
    pipe_file, pipe = loc.fs.fs.pipe_file, loc.fs.fs.pipe

    monkeypatch.setattr(loc.fs.fs, "pipe_file", lambda path, data, **kw: (order.append(path), pipe_file(path, data))[1])
    monkeypatch.setattr(loc.fs.fs, "pipe", lambda d, *a, **kw: (order.extend(sorted(d)), pipe(d, *a, **kw))[1])
    loc.publish("gen-0001", files(b"1"), b"{}")
    assert order[-1].endswith("gen-0001/DONE") and {p.rsplit("/", 1)[1] for p in order} == {"a.bin", "b.bin", DONE}
    assert sum(p.endswith(DONE) for p in order) == 1


def test_crash_mid_publish_publishes_nothing_and_a_retry_succeeds(where, monkeypatch):
    loc = Location(where)
    store = RunStore(loc)
    real, calls = loc.fs.pipe_file, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == (2 if loc.renames else 1):  # locally the 2nd file; on the store the DONE PUT
            raise KeyboardInterrupt  # the worker is killed half-way
        return real(*args, **kwargs)

    monkeypatch.setattr(loc.fs, "pipe_file", dying)
    with pytest.raises(KeyboardInterrupt):
        loc.publish("gen-0001", files(b"1"), b'{"generation": 1}')
    monkeypatch.undo()
    assert not store.is_done(1) and store.last_done() == 0
    if loc.renames:
        assert loc.fs.find("") == []  # the temp folder was removed
    else:
        assert loc.exists("gen-0001/a.bin")  # uploaded files without DONE: there, but not trusted
    assert loc.publish("gen-0001", files(b"1"), b'{"generation": 1}')
    assert store.last_done() == 1 and loc.read_bytes("gen-0001/a.bin") == b"1" * 10


def test_published_generation_is_never_rewritten(where):
    loc = Location(where)
    assert loc.publish("gen-0001", files(b"1"), b'{"v": 1}')
    assert not loc.publish("gen-0001", files(b"2"), b'{"v": 2}')  # a twin writer came second
    assert loc.read_json("gen-0001/DONE") == {"v": 1} and loc.read_bytes("gen-0001/b.bin") == b"111"


def test_debris_without_done_is_replaced(where):
    loc = Location(where)
    loc.write_bytes("gen-0001/a.bin", b"half")
    loc.write_bytes("gen-0001/stale.bin", b"from a crash")
    assert RunStore(loc).last_done() == 0
    assert loc.publish("gen-0001", files(b"1"), b"{}")
    assert loc.read_bytes("gen-0001/a.bin") == b"1" * 10
    assert loc.exists("gen-0001/stale.bin") == (not loc.renames)  # object stores overwrite file by file


def test_last_generation_scan_needs_every_generation_up_to_t(where):
    loc = Location(where)
    for run, gens in {"a": [1, 2, 3], "b": [1, 2, 4, 5], "c": [2, 3]}.items():
        for t in gens:
            loc.child("runs", run).publish(f"gen-{t:04d}", files(b"x"), b"{}")
    loc.write_bytes("runs/d/gen-0001/samples.npz", b"no DONE: not published")
    loc.write_bytes("runs/e/.gen-0001.tmp-1-abc/DONE", b"{}")  # a temp folder is never a generation
    assert last_done(loc, runs="runs") == {"a": 3, "b": 2}  # a run with nothing consecutive is absent
    assert {r: RunStore(loc.child("runs", r)).last_done() for r in "abcde"} == {"a": 3, "b": 2, "c": 0, "d": 0, "e": 0}
    assert RunStore(loc.child("runs", "b")).generations() == [1, 2, 4, 5]


def test_sample_codec_round_trip():
    rng = np.random.default_rng(0)
    vectors = Samples(rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 10, 50))
    back = decode_samples(encode_samples(vectors, pixels=False))
    # exact: float storage is lossless
    np.testing.assert_array_equal(back.x, vectors.x)
    # exact: integer labels
    np.testing.assert_array_equal(back.y, vectors.y)
    assert decode_samples(encode_samples(Samples(vectors.x), pixels=False)).y is None
    images = rng.uniform(-1.2, 1.2, size=(8, 1, 4, 4)).astype(np.float32)
    stored = decode_samples(encode_samples(Samples(images), pixels=True))
    assert stored.x.dtype == np.float32
    np.testing.assert_array_equal(stored.x, quantise(images))  # 8-bit storage = the 8-bit picture
    np.testing.assert_array_equal(decode_samples(encode_samples(stored, pixels=True)).x, stored.x)  # lossless once on the grid
    assert len(encode_samples(Samples(images), pixels=True)) < len(encode_samples(Samples(images), pixels=False))


def test_pixel_map_is_the_datasets_decoding():
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_float(pixels)), pixels)
    assert to_float(pixels)[[0, -1]].tolist() == [-1.0, 1.0]
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 3.0])), [0, 255])


def test_object_store_location_reads_writes_lists_and_names(monkeypatch):
    root = f"memory://layer-{uuid.uuid4().hex[:8]}/out"
    loc = Location(root)
    assert not loc.renames and loc.uri == root.replace("memory://", "memory:///")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    loc.write_frame("t.parquet", frame)
    loc.write_many({"runs/r1/config.json": b"{}", "runs/r2/config.json": b"{}"})
    # exact: parquet round trip is lossless
    pd.testing.assert_frame_equal(loc.read_frame("t.parquet"), frame)
    assert loc.glob("runs/*/config.json") == ["runs/r1/config.json", "runs/r2/config.json"]
    assert loc.child("runs", "r1").read_json("config.json") == {}
    assert loc.join("t.parquet") == f"{loc.uri}/t.parquet" and loc.child("runs", "r1").name == "r1"
    loc.delete("runs/r1/config.json")
    assert not loc.exists("runs/r1/config.json") and loc.exists("runs/r2/config.json")
    with pytest.raises(ValueError):
        Location("nosuchscheme://x")


def test_report_reads_an_object_store_folder_like_a_local_one(tmp_path):
    from conftest import gaussian_spec

    from madlab.specs import build_spec
    from madlab.analysis.results import open_results
    from madlab.runner import Runner

    spec = gaussian_spec(generations=3, n_real=30, n_synthetic=30)
    spec["sweep"] = {"seed": [0, 1]}
    bucket = f"memory://layer-{uuid.uuid4().hex[:8]}/out"
    for out in (tmp_path / "local", bucket):
        Runner(build_spec(spec), str(out), use_ray=False, stream=open(os.devnull, "w")).run()
    local, remote = open_results(tmp_path / "local"), open_results(bucket)
    # exact: the same table read through two stores
    pd.testing.assert_frame_equal(local.table, remote.table)
    run_id = local.runs.run_id.iloc[0]
    assert remote.generations(run_id) == local.generations(run_id) == [1, 2, 3]
    # exact: the same stored samples read through two stores
    np.testing.assert_array_equal(remote.samples(run_id, 2).x, local.samples(run_id, 2).x)
    assert remote.config(run_id) == local.config(run_id)
