"""TensorBoard sink, read back with TensorBoard's event reader over the event files (offline)."""
from __future__ import annotations

import time

import pytest

from tracking_common import same_points, sweep_spec, table_points

pytest.importorskip("tensorboard")
from madlab.tracking.tensorboard_sink import MARKER, read_scalars, read_status  # noqa: E402


def tensorboard_points(root) -> dict:
    points = {}
    for folder in sorted(root.iterdir()):
        for tag, values in read_scalars(str(folder)).items():
            if tag != MARKER:
                points[folder.name, tag] = sorted(values)
    return points


def test_scalars_per_generation_and_hparams(cli, write_spec, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = cli("run", write_spec(sweep_spec()), "--out", out, "--no-ray", "--track", "tensorboard")
    assert code == 0, stdout
    assert same_points(tensorboard_points(out / "tensorboard"), table_points(out))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    run_dir = next((out / "tensorboard").iterdir())
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert start.hparams["scheme"].string_value == "fully-synthetic"
    assert start.hparams["bias"].number_value in (1.0, 0.8) and start.hparams["seed"].number_value in (0, 1)
    assert end.status == 1  # STATUS_SUCCESS


def test_resume_purges_a_half_written_generation(cli, write_spec, tmp_path, monkeypatch):
    """A run fails at generation 3 (generations 1-2 in TensorBoard); stray events of generation 3
    left by a killed driver (metrics without the marker) are purged when the resumed sweep writes
    generation 3 again: every step once, the table's values."""
    out, spec = tmp_path / "out", write_spec(sweep_spec())
    monkeypatch.setenv("MADLAB_FAULT", "raise:bias=0.8,seed=0-*:3")
    assert cli("run", spec, "--out", out, "--no-ray", "--track", "tensorboard")[0] == 1
    failed = next(p for p in (out / "tensorboard").iterdir() if p.name.startswith("bias=0.8,seed=0-"))
    assert max(step for step, _ in read_scalars(str(failed))[MARKER]) == 2
    assert read_status(str(failed)) == "failed"  # the hparams session end, STATUS_FAILURE
    from torch.utils.tensorboard import SummaryWriter

    stray = SummaryWriter(str(failed))
    stray.add_scalar("w2", 123.0, 3)  # half a generation: no marker after it
    stray.close()
    # event files are read in name order, the name starts with the second it was opened: a killed
    # driver's file is older than the resumed one's, so wait for the next second as it would be
    time.sleep(1.1)

    monkeypatch.delenv("MADLAB_FAULT")
    assert cli("run", spec, "--out", out, "--no-ray", "--track", "tensorboard")[0] == 0
    assert same_points(tensorboard_points(out / "tensorboard"), table_points(out))
    assert read_status(str(failed)) == "ok"
    code, _, _ = cli("track", out, "--to", "tensorboard")  # back-fill over a complete tracker: nothing added
    assert code == 0 and same_points(tensorboard_points(out / "tensorboard"), table_points(out))


def test_grids_go_in_as_images(tmp_path):
    """`grids: true`: each generation's grid.png (an image run's) becomes the image `samples` at its step."""
    import numpy as np
    from PIL import Image

    from madlab.tracking import Target
    from madlab.tracking.base import RunInfo, SweepInfo
    from madlab.tracking.tensorboard_sink import TensorBoardSink

    run_dir = tmp_path / "runs" / "r"
    for t in (1, 2):
        (run_dir / f"gen-{t:04d}").mkdir(parents=True)
        Image.fromarray(np.full((6, 8, 3), 40 * t, dtype=np.uint8)).save(run_dir / f"gen-{t:04d}" / "grid.png")
    config = {"loop": {"scheme": "s", "bias": 1.0}, "seed": 0, "generator": {"name": "g"}, "dataset": {"name": "d"}}
    run = RunInfo("r", config, {}, 2, str(run_dir))
    sink = TensorBoardSink(Target("tensorboard", str(tmp_path / "tb"), {"grids": True}), SweepInfo("s", "/x", (run,)))
    assert sink.start() == {}
    sink.log(run, {1: {"fid": 1.0}, 2: {"fid": 0.5}})
    sink.end(run, "ok", None)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tmp_path / "tb" / "r"), size_guidance={"images": 0})
    accumulator.Reload()
    images = accumulator.Images("samples")
    assert [(i.step, i.width, i.height) for i in images] == [(1, 8, 6), (2, 8, 6)]
