"""Which trackers a sweep feeds: the spec's ``tracking:`` and ``--track NAME[=URI]``, checked at validate time.

A spec lists trackers by name, or as mappings with a ``name`` (and ``uri`` and the sink's options)::

    tracking:
      - mlflow                                   # DIR/mlflow.db, a local SQLite store
      - {name: wandb, project: mad, mode: offline}
      - {name: tensorboard, uri: /scratch/tb, grids: true}   # and each generation's sample grid

``--track NAME[=URI]`` on the command line adds one, or replaces the spec's entry of that name.
An unknown name, a missing extra or a URI that cannot work is a ConfigError (one line, exit 2)
before anything is written; where each tracker writes by default is resolved here, once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from madlab.core.errors import ConfigError
from madlab.tracking.registry import SINKS, missing_extra

#: MLflow stores a URI may name (a tracking server speaks http(s); the rest are SQLAlchemy or files)
MLFLOW_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
WANDB_MODES = ("offline", "online")
#: options that are switches: ``grids`` sends each image generation's sample grid (``grid.png``)
BOOLEAN_OPTIONS = ("grids",)


@dataclass(frozen=True)
class Target:
    name: str
    #: where it writes, resolved (an MLflow tracking URI, or a local folder)
    uri: str
    options: dict = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.name} ({self.uri})"


def parse_targets(entries, out_dir: str, where: str = "tracking") -> list[Target]:
    """``tracking:`` entries (names, ``NAME=URI`` strings or mappings) -> checked Targets."""
    if entries is None:
        return []
    if isinstance(entries, (str, dict)):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: must be a list of tracker names or {{name: ..., uri: ...}} mappings")
    targets = [_one(entry, out_dir, where) for entry in entries]
    names = [t.name for t in targets]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where}: {name} is listed twice")
    return targets


def merge_targets(spec_targets: list[Target], cli_targets: list[Target]) -> list[Target]:
    """The spec's trackers, with those named on the command line added or replacing theirs."""
    named = {t.name for t in cli_targets}
    return [t for t in spec_targets if t.name not in named] + list(cli_targets)


def _one(entry, out_dir: str, where: str) -> Target:
    if isinstance(entry, str):
        name, _, uri = entry.partition("=")
        options = {"uri": uri} if uri else {}
    elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
        name, options = entry["name"], {k: v for k, v in entry.items() if k != "name"}
    else:
        raise ConfigError(f"{where}: each entry is a tracker name or a mapping with a `name` (got {entry!r})")
    name = name.strip()
    if name not in SINKS:
        raise ConfigError(f"{where}: unknown tracker {name!r} (known: {', '.join(sorted(SINKS))})")
    sink = SINKS[name]
    for key, value in options.items():
        if key != "uri" and key not in sink.options:
            allowed = ", ".join(("uri",) + sink.options)
            raise ConfigError(f"{where}: {name}: unknown key {key!r} (allowed: {allowed})")
        if key in BOOLEAN_OPTIONS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {name}.{key}: must be true or false")
        elif not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {name}.{key}: must be a non-empty string")
    module = missing_extra(name)
    if module is not None:
        raise ConfigError(f"{where}: {name} needs the {module!r} package, not installed here: "
                          f"pip install 'madlab[{sink.extra}]'")
    uri = options.pop("uri", None)
    if name == "wandb" and options.get("mode", "offline") not in WANDB_MODES:
        raise ConfigError(f"{where}: wandb.mode: {options['mode']!r} (allowed: {', '.join(WANDB_MODES)})")
    resolve = _mlflow_uri if name == "mlflow" else _folder
    return Target(name, resolve(name, uri, out_dir, where), options)


def _local_out(name: str, out_dir: str, where: str) -> str:
    parsed = urlparse(str(out_dir))
    if len(parsed.scheme) > 1 and parsed.scheme != "file":
        raise ConfigError(f"{where}: {name}: the results folder {out_dir} is not local; "
                          f"give the tracker a location (--track {name}=URI)")
    return os.path.abspath(parsed.path if parsed.scheme == "file" else str(out_dir))


def _writable_parent(name: str, path: str, out_dir: str, where: str, shown: str) -> None:
    """``path``'s folder exists or can be made: its nearest existing ancestor is a writable folder
    (the results folder counts as existing: the run creates it)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    try:
        out = _local_out(name, out_dir, where)
    except ConfigError:
        out = None
    while not os.path.exists(parent) and parent != out:
        parent = os.path.dirname(parent)
    if parent == out and not os.path.exists(out):
        return
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ConfigError(f"{where}: {name}: {shown}: cannot write under {parent}")


def _mlflow_uri(name: str, uri: str | None, out_dir: str, where: str) -> str:
    if uri is None:
        return "sqlite:///" + os.path.join(_local_out(name, out_dir, where), "mlflow.db")  # 4 slashes: absolute
    scheme = urlparse(uri).scheme
    if scheme not in MLFLOW_SCHEMES:
        raise ConfigError(f"{where}: mlflow: {uri!r}: not a tracking URI (schemes: {', '.join(MLFLOW_SCHEMES)})")
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or len(uri) <= len("sqlite:///"):
            raise ConfigError(f"{where}: mlflow: {uri!r}: a SQLite URI is sqlite:///relative.db or "
                              f"sqlite:////absolute.db")
        _writable_parent(name, uri[len("sqlite:///"):], out_dir, where, uri)
    elif scheme == "file":
        _writable_parent(name, os.path.join(urlparse(uri).path, "x"), out_dir, where, uri)
    elif scheme in ("http", "https") and not urlparse(uri).netloc:
        raise ConfigError(f"{where}: mlflow: {uri!r}: a server URI names a host")
    return uri


def _folder(name: str, uri: str | None, out_dir: str, where: str) -> str:
    if uri is None:
        base = _local_out(name, out_dir, where)
        return os.path.join(base, "tensorboard") if name == "tensorboard" else base
    parsed = urlparse(uri)
    if len(parsed.scheme) > 1 and parsed.scheme != "file":
        raise ConfigError(f"{where}: {name}: {uri!r}: must be a local folder (or a file: URI)")
    path = os.path.abspath(parsed.path if parsed.scheme == "file" else uri)
    _writable_parent(name, os.path.join(path, "x"), out_dir, where, uri)
    return path
