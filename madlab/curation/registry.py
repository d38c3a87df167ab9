"""Curator registry: the ``madlab.curators`` entry-point group, and the validate-time check.

The curators shipped with madlab are registered there too (see pyproject.toml), so a third-party
package uses exactly the same door as for generators (:mod:`madlab.registry`).
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from pydantic import ValidationError

from madlab.curation.protocol import Curator, CuratorParams
from madlab.errors import ConfigError

GROUP = "madlab.curators"
KEY = "loop.curation"


@lru_cache(maxsize=None)
def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def curator_names() -> list[str]:
    return sorted(_entry_points())


def get_curator_class(name: str) -> type[Curator]:
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"{KEY}.name: unknown curator {name!r} (known: {known})")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plugin is a config error, not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"{KEY}.name: plugin {name!r} ({eps[name].value}) cannot be loaded: "
                          f"{type(exc).__name__}: {first}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Curator)):
        raise ConfigError(f"{KEY}.name: plugin {name!r} ({eps[name].value}) is not a madlab.curation.Curator")
    return cls


def format_error(exc: ValidationError, prefix: str = f"{KEY}.") -> str:
    """One line naming the key of the first problem pydantic found."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return f"{prefix}{loc}: {message}" if loc else f"{prefix.rstrip('.')}: {message}"


def make_curator_params(section: dict) -> tuple[type[Curator], CuratorParams]:
    """``{name: ..., <params>}`` -> (curator class, validated params); ConfigError naming the key."""
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"{KEY}.name: required key is missing (loop.curation is {{name: ..., <params>}})")
    if not isinstance(section["name"], str):
        raise ConfigError(f"{KEY}.name: must be a curator name (got {section['name']!r})")
    cls = get_curator_class(section["name"])
    try:
        params = cls.Params.model_validate({k: v for k, v in section.items() if k != "name"})
    except ValidationError as exc:
        raise ConfigError(format_error(exc)) from None
    return cls, params


def validate_curation(section: dict, dataset, where: str = "") -> None:
    """Everything ``madlab validate`` checks about ``loop.curation`` (raises ConfigError, one line)."""
    try:
        cls, params = make_curator_params(section)
        if dataset.kind not in cls.data_kinds:
            raise ConfigError(f"{KEY}.name: curator {cls.name!r} does not handle {dataset.kind} data "
                              f"(dataset {dataset.name!r})")
        if cls.candidates_per_kept(params) > params.max_oversampling:
            raise ConfigError(f"{KEY}.max_oversampling: curator {cls.name!r} draws "
                              f"{cls.candidates_per_kept(params):g} candidates per kept sample, above the cap "
                              f"{params.max_oversampling:g}")
        cls.check(params, dataset)
    except ConfigError as exc:
        if where:
            raise ConfigError(f"{exc}{where}") from None
        raise
