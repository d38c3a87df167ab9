"""The tracker sinks by name: where each lives and which optional extra it needs.

A sink is named by a ``module:Class`` string, imported only when a sweep uses it, so a madlab
without the ``mlflow`` extra still validates specs that do not ask for MLflow, and a spec that
does is refused in one line naming the extra (:func:`missing_extra`).
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class SinkEntry:
    #: ``module:Class`` of the sink
    target: str
    #: the import names the sink needs, and the extra that installs them
    requires: tuple[str, ...]
    extra: str
    #: what the ``URI`` of ``--track NAME=URI`` means for this sink
    uri_help: str
    #: the keys a spec's ``tracking:`` entry may give besides ``name`` and ``uri``
    options: tuple[str, ...] = ()


SINKS: dict[str, SinkEntry] = {
    "mlflow": SinkEntry("madlab.tracking.mlflow_sink:MLflowSink", ("mlflow", "sqlalchemy", "alembic"), "mlflow",
                        "a tracking URI: sqlite:///path.db, file:/folder, or http(s)://server", ("experiment", "grids")),
    "tensorboard": SinkEntry("madlab.tracking.tensorboard_sink:TensorBoardSink", ("tensorboard", "torch"),
                             "tensorboard", "the log folder (default DIR/tensorboard)", ("grids",)),
    "wandb": SinkEntry("madlab.tracking.wandb_sink:WandbSink", ("wandb",), "wandb",
                       "the folder W&B writes its run files under (default DIR, files in DIR/wandb)",
                       ("project", "entity", "mode")),
}


def register_sink(name: str, entry: SinkEntry) -> None:
    """Add (or replace) a sink; a third-party tracker plugs in here."""
    if not isinstance(entry, SinkEntry):
        raise TypeError(f"register_sink({name!r}): expected a SinkEntry, got {type(entry).__name__}")
    SINKS[name] = entry


def missing_extra(name: str) -> str | None:
    """The first import name the sink ``name`` needs that is not installed (checked without importing it)."""
    for module in SINKS[name].requires:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def get_sink_class(name: str):
    module, _, cls = SINKS[name].target.partition(":")
    return getattr(importlib.import_module(module), cls)
