"""Experiment trackers fed live from what the results store publishes (MLflow, TensorBoard, W&B).

The parquet table stays the source of truth; trackers are mirrors. Only the driver talks to
them (workers need no credentials), in a background thread that batches what was published
(:mod:`~madlab.tracking.dispatch`), so a slow or failing tracker never fails or slows a run.

One module per concern:

* :mod:`~madlab.tracking.targets`   ``tracking:`` / ``--track NAME[=URI]``: parsed and checked at validate time;
* :mod:`~madlab.tracking.registry`  the sinks by name (one door, as for generators and curators);
* :mod:`~madlab.tracking.base`      the ``Sink`` protocol and what a sink is told about a sweep and a run;
* :mod:`~madlab.tracking.dispatch`  the driver side: async, batched, resume-safe, errors reported once per sink;
* :mod:`~madlab.tracking.backfill`  ``madlab track DIR --to NAME``: an existing results folder into a tracker;
* ``mlflow_sink``, ``tensorboard_sink``, ``wandb_sink``: one sink each (their libraries are optional extras).
"""
from madlab.tracking.registry import SINKS, SinkEntry, get_sink_class, register_sink
from madlab.tracking.targets import Target, merge_targets, parse_targets

__all__ = ["SINKS", "SinkEntry", "Target", "get_sink_class", "merge_targets", "parse_targets", "register_sink"]
