"""Plugins for one test: entry points written as pip would write them, and the ``madlab_entry_point`` fixture."""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest

from madlab.plugins import registry


def register_entry_point(folder: str | Path, name: str, target: str, *, distribution: str = "madlab-test-plugin",
                         group: str = "madlab.generators") -> Path:
    """Write the metadata pip would write for a plugin (``.dist-info/entry_points.txt``) into ``folder``.

    With ``folder`` on ``sys.path`` (and the module ``target`` names importable), ``importlib.metadata``
    finds the entry point exactly as for an installed package. Call
    ``madlab.plugins.registry.refresh()`` after changing ``sys.path``; the fixture
    :func:`madlab_entry_point` does all of it.
    """
    dist = Path(folder) / f"{distribution.replace('-', '_')}-0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0\n")
    ep_file = dist / "entry_points.txt"
    table = configparser.ConfigParser(delimiters=("=",))
    table.optionxform = str  # entry-point names are case-sensitive
    if ep_file.exists():
        table.read(ep_file)
    if not table.has_section(group):
        table.add_section(group)
    table.set(group, name, target)
    with ep_file.open("w") as out:
        table.write(out)
    return dist


@pytest.fixture
def madlab_entry_point(tmp_path, monkeypatch):
    """``register(name, target, source_dir=None, group="madlab.generators")``: make a plugin discoverable for
    one test, install nothing.

    ``source_dir`` (the folder holding the plugin's module) is put on ``sys.path`` too; the registry's
    cache is cleared before and after, so the plugin is gone when the test ends.
    """
    folder = tmp_path / "site"
    added: list[str] = []

    def register(name: str, target: str, source_dir: str | Path | None = None,
                 group: str = "madlab.generators") -> None:
        register_entry_point(folder, name, target, group=group)
        monkeypatch.syspath_prepend(str(folder))
        if source_dir is not None:
            monkeypatch.syspath_prepend(str(source_dir))
        added.append(target.split(":")[0])
        registry.refresh()

    yield register
    registry.refresh()
    for module in added:
        sys.modules.pop(module, None)
