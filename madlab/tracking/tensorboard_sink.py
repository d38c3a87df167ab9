"""TensorBoard: event files under ``DIR/tensorboard/<run_id>``, one scalar per metric with
``step = generation``, and the run's tags (scheme, λ, seed, sweep keys, ...) as hparams.

Written with torch's ``SummaryWriter`` (torch is a madlab dependency), read back with
TensorBoard's ``EventAccumulator``. Resume: after each generation's metrics the scalar
``madlab/generation`` is written; on resume the last one found says what is in, and the new
writer's ``purge_step`` (the generation after it) tells TensorBoard to drop anything a killed
driver left of a half-written generation.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from madlab.tracking.base import Points, RunInfo, SweepInfo
from madlab.tracking.targets import Target

MARKER = "madlab/generation"
ERROR_TAG = "madlab/error"


def read_scalars(run_dir: str, accumulator=None) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of a run's event files, as TensorBoard shows them (purged steps dropped)."""
    accumulator = accumulator or _accumulator(run_dir)
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_status(run_dir: str, accumulator=None) -> str | None:
    """"ok" when the run wrote its hparams session end (a finished run), "failed" when it wrote only
    its error text, else None. (TensorBoard keeps the first session end of a tag, so a failed run that
    a resume finishes could not turn one from failure to success: a failure writes none.)"""
    # optional dependency (extra `tensorboard`)
    from tensorboard.plugins.hparams import metadata

    accumulator = accumulator or _accumulator(run_dir)
    if metadata.SESSION_END_INFO_TAG in accumulator.PluginTagToContent(metadata.PLUGIN_NAME):
        return "ok"
    tensors = accumulator.Tags()["tensors"]  # torch's add_text writes the tensor tag "<tag>/text_summary"
    return "failed" if any(tag.startswith(ERROR_TAG + "/") for tag in tensors) else None


def _accumulator(run_dir: str):
    # optional dependency (extra `tensorboard`)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(run_dir, size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


class TensorBoardSink:
    def __init__(self, target: Target, sweep: SweepInfo):
        self.root, self.sweep = target.uri, sweep
        self.grids = bool(target.options.get("grids"))
        self.writers: dict = {}
        self.logged: dict[str, int] = {}

    def start(self) -> dict[str, tuple[int, str | None]]:
        held = {}
        for run in self.sweep.runs:
            folder = os.path.join(self.root, run.run_id)
            if os.path.isdir(folder):
                accumulator = _accumulator(folder)
                steps = [step for step, _ in read_scalars(folder, accumulator).get(MARKER, [])]
                self.logged[run.run_id] = max(steps, default=0)
                held[run.run_id] = (self.logged[run.run_id], read_status(folder, accumulator))
        return held

    def _writer(self, run: RunInfo, metrics: list[str]):
        if run.run_id not in self.writers:
            # optional dependency (extra `tensorboard`: torch's writer needs the tensorboard package)
            from torch.utils.tensorboard import SummaryWriter

            folder = os.path.join(self.root, run.run_id)
            resumed = os.path.isdir(folder)
            writer = SummaryWriter(folder, purge_step=self.logged.get(run.run_id, 0) + 1 if resumed else None)
            if not self.logged.get(run.run_id):
                self._hparams(writer, run, metrics)
            self.writers[run.run_id] = writer
        return self.writers[run.run_id]

    @staticmethod
    def _hparams(writer, run: RunInfo, metrics: list[str]) -> None:
        from torch.utils.tensorboard.summary import hparams  # optional dependency, see _writer

        values = {**run.tags(), "bias": float(run.config["loop"]["bias"]), "seed": int(run.config["seed"])}
        experiment, session_start, _ = hparams(values, {m: 0.0 for m in metrics})  # the end comes with end()
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(session_start)

    def log(self, run: RunInfo, points: Points) -> None:
        writer = self._writer(run, sorted(next(iter(points.values()))))
        for t, metrics in points.items():
            for name, value in sorted(metrics.items()):
                writer.add_scalar(name, value, t)
            if self.grids and run.grid(t):
                writer.add_image("samples", _png(run.grid(t)), t, dataformats="HWC")
            writer.add_scalar(MARKER, t, t)
        writer.flush()
        self.logged[run.run_id] = max(points)

    def end(self, run: RunInfo, status: str, error: str | None) -> None:
        writer = self._writer(run, [])
        if status == "failed":
            writer.add_text(ERROR_TAG, error or "failed", self.logged.get(run.run_id, 0))
        else:
            writer.file_writer.add_summary(_session_end())
        writer.close()
        del self.writers[run.run_id]

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def _png(path: str) -> np.ndarray:
    """A PNG as uint8 (H, W, 3)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _session_end():
    """The hparams plugin's session-end summary of a finished run (STATUS_SUCCESS), as torch's ``hparams``
    builds it, written here at the run's end rather than at its start."""
    # optional dependency (extra `tensorboard`)
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    content = plugin_data_pb2.HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin))])
