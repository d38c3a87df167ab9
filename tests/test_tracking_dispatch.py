"""The driver side of tracking, with sinks written here: batching, resume, failures, a stuck tracker."""
from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from madlab.specs import build_spec
from madlab.runner import Runner
from madlab.tracking import SINKS, SinkEntry, Target
from madlab.tracking.base import RunInfo, SweepInfo
from madlab.tracking.dispatch import Dispatcher
from tracking_common import same_points, sweep_spec, table_points

#: what the sinks below were told, per test
CALLS: list[tuple] = []
HELD: dict = {}
RELEASE = threading.Event()


class RecordingSink:
    def __init__(self, target, sweep):
        self.sweep = sweep

    def start(self):
        CALLS.append(("start",))
        return dict(HELD)

    def log(self, run, points):
        CALLS.append(("log", run.run_id, {t: dict(m) for t, m in points.items()}))

    def end(self, run, status, error):
        CALLS.append(("end", run.run_id, status, error))

    def close(self):
        CALLS.append(("close",))


class RaisingSink(RecordingSink):
    def log(self, run, points):
        raise ConnectionError("tracker down\nsecond line")


class StuckSink(RecordingSink):
    def log(self, run, points):
        RELEASE.wait(30)


@pytest.fixture(autouse=True)
def test_sinks(monkeypatch):
    for name, cls in (("record", "RecordingSink"), ("boom", "RaisingSink"), ("stuck", "StuckSink")):
        monkeypatch.setitem(SINKS, name, SinkEntry(f"test_tracking_dispatch:{cls}", (), "none", "unused"))
    CALLS.clear()
    HELD.clear()
    RELEASE.clear()
    yield
    RELEASE.set()


def recorded_points() -> dict:
    points: dict = {}
    for call in CALLS:
        if call[0] == "log":
            for t, metrics in call[2].items():
                for metric, value in metrics.items():
                    points.setdefault((call[1], metric), []).append((t, value))
    return {key: sorted(values) for key, values in points.items()}


def run_sweep(tmp_path, track: list[str], spec: dict | None = None, **runner):
    out = tmp_path / "out"
    spec = build_spec(spec or sweep_spec(), out=str(out))
    spec.tracking = [Target(name, "unused") for name in track]
    summary = Runner(spec, str(out), use_ray=False, stream=runner.pop("stream", None), **runner).run()
    return out, summary


def test_batches_what_was_published_and_skips_what_the_tracker_holds(tmp_path):
    """Five generations published before a flush go in one call; a resumed tracker that holds
    generations 1-3 of a run is sent 4-5 only."""
    run = RunInfo("r", {"loop": {"scheme": "s", "bias": 1.0}, "seed": 0, "generator": {"name": "g"},
                        "dataset": {"name": "d"}}, {}, 5)
    rows = [{"generation": t, "metric": "w2", "value": float(t)} for t in range(1, 6)]
    outcome = type("Outcome", (), {"run_id": "r", "status": "ok", "error": None, "rows": rows})
    for held, sent in (({}, [1, 2, 3, 4, 5]), ({"r": (3, None)}, [4, 5])):
        CALLS.clear()
        HELD.clear()
        HELD.update(held)
        dispatcher = Dispatcher([Target("record", "unused")], SweepInfo("s", "/x", (run,)), {"r": None}, flush_s=60)
        dispatcher.finished([outcome])
        dispatcher.close()
        logs = [c for c in CALLS if c[0] == "log"]
        assert len(logs) == 1 and list(logs[0][2]) == sent
        assert CALLS[-2:] == [("end", "r", "ok", None), ("close",)]


def test_live_points_equal_the_table_and_failures_are_marked(tmp_path, monkeypatch):
    monkeypatch.setenv("MADLAB_FAULT", "raise:bias=0.8,seed=1-*:3")
    out, summary = run_sweep(tmp_path, ["record"])
    assert len(summary.failed) == 1
    assert same_points(recorded_points(), table_points(out))  # the table's floats, passed as they are
    ends = {c[1]: (c[2], c[3]) for c in CALLS if c[0] == "end"}
    table = pd.read_parquet(out / "metrics.parquet")
    (reason,) = table[table.metric == "failed"].error
    assert ends[summary.failed[0].run_id] == ("failed", reason) and sum(s == "ok" for s, _ in ends.values()) == 3


def test_vectorised_runs_are_tracked_from_their_batch_records(tmp_path):
    spec = sweep_spec()
    spec["sweep"] = {"loop.bias": [1.0, 0.8], "seed": [0, 1, 2]}
    out, _ = run_sweep(tmp_path, ["record"], spec, batch_min_runs=2)
    assert (out / "batches").is_dir()
    assert same_points(recorded_points(), table_points(out))


def test_a_raising_tracker_leaves_the_run_and_its_table_alone(tmp_path, capsys):
    plain, _ = run_sweep(tmp_path / "plain", [])
    tracked, summary = run_sweep(tmp_path / "tracked", ["boom"])
    assert not summary.failed
    # the same computation path on the same machine: the tables are equal bit for bit
    pd.testing.assert_frame_equal(pd.read_parquet(plain / "metrics.parquet"), pd.read_parquet(tracked / "metrics.parquet"))
    output = capsys.readouterr().out
    assert output.count("ConnectionError: tracker down (the sweep goes on") == 1
    assert "boom: " in output and f"madlab track {tracked}" in output


def test_a_stuck_tracker_does_not_hold_the_sweep(tmp_path, capsys, monkeypatch):
    """A tracker that never answers: the generations run on (the dispatcher's thread waits, not
    the driver), and the end of the sweep waits CLOSE_S for it, then says how to fill it in."""
    monkeypatch.setattr("madlab.tracking.dispatch.CLOSE_S", 1.0)
    start = time.monotonic()
    out, summary = run_sweep(tmp_path, ["stuck"])
    assert not summary.failed and time.monotonic() - start < 25
    assert (out / "metrics.parquet").is_file()
    assert "stopped waiting (`madlab track" in capsys.readouterr().out
