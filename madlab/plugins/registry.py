"""The plugin door: every plugin kind is an entry-point group, found and checked here.

=====================  =======================  ==================================
kind                   entry-point group        base class (checked on load)
=====================  =======================  ==================================
generators             ``madlab.generators``    :class:`madlab.plugins.Generator`
curators               ``madlab.curators``      :class:`madlab.plugins.Curator`
datasets               ``madlab.datasets``      :class:`madlab.plugins.Dataset`
=====================  =======================  ==================================

The plugins shipped with madlab are registered there too (see pyproject.toml), so a third-party
package uses exactly the same door. :mod:`madlab.plugins.index` lists the same groups without
importing anything.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from madlab.core.errors import ConfigError
from madlab.plugins.curator import Curator
from madlab.plugins.dataset import Dataset
from madlab.plugins.generator import Generator
from madlab.plugins.index import GROUPS

GROUP = GROUPS["generators"]
#: kind -> (config key an unknown name is reported at, base class)
_KINDS = {"generators": ("generator.name", Generator), "curators": ("loop.curation.name", Curator),
          "datasets": ("dataset.name", Dataset)}


@lru_cache(maxsize=None)
def entry_point_table(group: str) -> dict:
    """name -> entry point of one plugin group, cached."""
    return {ep.name: ep for ep in entry_points(group=group)}


def refresh() -> None:
    """Forget the cached entry-point tables (after ``sys.path`` or installed packages changed)."""
    entry_point_table.cache_clear()


def plugin_names(kind: str) -> list[str]:
    """The registered names of one plugin kind (``generators``, ``curators``, ``datasets``)."""
    return sorted(entry_point_table(GROUPS[kind]))


def get_plugin_class(kind: str, name: str) -> type:
    """The class registered as ``name`` for ``kind``, checked to subclass the kind's base."""
    key, base = _KINDS[kind]
    return load_plugin(entry_point_table(GROUPS[kind]), name, key=key, kind=kind[:-1], base=base)


def load_plugin(eps: dict, name: str, *, key: str, kind: str, base: type) -> type:
    """The class registered as ``name`` in an entry-point table ``eps``, checked to be a ``base``.

    Every plugin kind (generators, curators, datasets) loads through here: an unknown name, a module that
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
    return get_plugin_class("generators", name)


def get_curator_class(name: str) -> type[Curator]:
    return get_plugin_class("curators", name)


def get_dataset_class(name: str) -> type[Dataset]:
    return get_plugin_class("datasets", name)


def generator_names() -> list[str]:
    return plugin_names("generators")


def curator_names() -> list[str]:
    return plugin_names("curators")


def distributions() -> dict[str, str | None]:
    """Which installed distribution registers each generator (``madlab`` for the shipped ones)."""
    return {name: (ep.dist.name if getattr(ep, "dist", None) is not None else None)
            for name, ep in entry_point_table(GROUP).items()}
