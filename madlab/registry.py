"""Generator registry: the ``madlab.generators`` entry-point group.

The generators shipped with madlab are registered there too (see pyproject.toml), so a
third-party package uses exactly the same door.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from madlab.errors import ConfigError
from madlab.protocol import Generator

GROUP = "madlab.generators"


@lru_cache(maxsize=None)
def entry_point_table(group: str) -> dict:
    """name -> entry point of one plugin group (``madlab.generators``, ``madlab.curators``), cached."""
    return {ep.name: ep for ep in entry_points(group=group)}


def _entry_points() -> dict:
    return entry_point_table(GROUP)


def generator_names() -> list[str]:
    return sorted(_entry_points())


def distributions() -> dict[str, str | None]:
    """Which installed distribution registers each generator (``madlab`` for the shipped ones)."""
    return {name: (ep.dist.name if getattr(ep, "dist", None) is not None else None)
            for name, ep in _entry_points().items()}


def refresh() -> None:
    """Forget the cached entry-point table (after ``sys.path`` or installed packages changed)."""
    entry_point_table.cache_clear()


def load_plugin(eps: dict, name: str, *, key: str, kind: str, base: type) -> type:
    """The class registered as ``name`` in an entry-point table ``eps``, checked to be a ``base``.

    Every plugin kind (generators, curators) loads through here: an unknown name, a module that
    cannot be imported and a class of the wrong kind are each one ConfigError naming ``key``.
    """
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"{key}: unknown {kind} {name!r} (known: {known})")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a plugin whose module or dependencies are broken: a config error, not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"{key}: plugin {name!r} ({eps[name].value}) cannot be loaded: "
                          f"{type(exc).__name__}: {first}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}: plugin {name!r} ({eps[name].value}) is not a {base.__module__}.{base.__qualname__}")
    return cls


def get_generator_class(name: str) -> type[Generator]:
    return load_plugin(_entry_points(), name, key="generator.name", kind="generator", base=Generator)
