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
def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def generator_names() -> list[str]:
    return sorted(_entry_points())


def distributions() -> dict[str, str | None]:
    """Which installed distribution registers each generator (``madlab`` for the shipped ones)."""
    return {name: (ep.dist.name if getattr(ep, "dist", None) is not None else None)
            for name, ep in _entry_points().items()}


def refresh() -> None:
    """Forget the cached entry-point table (after ``sys.path`` or installed packages changed)."""
    _entry_points.cache_clear()


def get_generator_class(name: str) -> type[Generator]:
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"generator.name: unknown generator {name!r} (known: {known})")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a plugin whose module or dependencies are broken: a config error, not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"generator.name: plugin {name!r} ({eps[name].value}) cannot be loaded: "
                          f"{type(exc).__name__}: {first}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise ConfigError(f"generator.name: plugin {name!r} ({eps[name].value}) is not a madlab.protocol.Generator")
    return cls
