"""The third-party plugin example (examples/plugin) is found through the entry point and passes the contract.

Nothing is installed: the test writes the distribution metadata pip would write (a
``.dist-info`` folder with ``entry_points.txt``) into a temporary folder on ``sys.path`` next
to the example's source, which is exactly what ``importlib.metadata`` reads for an installed
package, then clears madlab's cached entry-point table.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from madlab import registry
from test_generator_contract import (
    CHECKS, Case, check_samples, check_state_round_trip, fitted, tiny_data,
)

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"
KDE_CASE = Case({"bandwidth": 0.3}, (2,), bad=({"bandwidth": -1.0}, {"max_points": 1}, {"max_points": 2}))


def _entry_points_txt(pyproject: dict) -> str:
    lines = []
    for group, entries in pyproject["project"]["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    pyproject = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    project = pyproject["project"]
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text(_entry_points_txt(pyproject))
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._entry_points.cache_clear()
    yield
    registry._entry_points.cache_clear()
    sys.modules.pop("madlab_kde", None)


def test_plugin_is_discovered_through_the_entry_point(installed_plugin):
    assert "kde" in registry.generator_names()
    cls = registry.get_generator_class("kde")
    assert cls.__module__ == "madlab_kde" and cls.name == "kde"
    assert cls.describe().startswith("Gaussian KDE")


def test_plugin_passes_the_contract(installed_plugin, tmp_path):
    cls = registry.get_generator_class("kde")
    for check in CHECKS:
        check("kde", KDE_CASE, cls=cls)
    check_state_round_trip("kde", KDE_CASE, tmp_path, cls=cls)


def test_plugin_bias_shrinks_the_kernel(installed_plugin):
    cls = registry.get_generator_class("kde")
    gen = fitted("kde", KDE_CASE, cls=cls)
    train = tiny_data(KDE_CASE)
    full, none = gen.sample(4000, bias=1.0, seed=0), gen.sample(500, bias=0.0, seed=0)
    check_samples(full, 4000, KDE_CASE)
    assert full.x.var(0).sum() > train.x.var(0).sum()
    # λ = 0 returns training points exactly
    assert np.isin(none.x[:, 0], train.x[:, 0].astype(np.float64)).all()



@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    """A plugin whose module imports a dependency that is not installed."""
    dist = tmp_path / "madlab_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: madlab-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[madlab.generators]\nbroken = madlab_broken_plugin:Gen\n")
    (tmp_path / "madlab_broken_plugin.py").write_text("import no_such_dependency_for_madlab\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._entry_points.cache_clear()
    yield
    registry._entry_points.cache_clear()
    sys.modules.pop("madlab_broken_plugin", None)


def test_broken_plugin_is_a_one_line_config_error(broken_plugin, write_spec, cli, tmp_path):
    spec = write_spec({"name": "uses-broken", "dataset": {"name": "gaussian", "dim": 2},
                       "generator": {"name": "broken"},
                       "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 50, "n_synthetic": 50}})
    code, _, err = cli("run", spec, "--out", tmp_path / "res", "--no-ray")
    assert code == 2
    assert err.strip().splitlines() == [
        "madlab: error: generator.name: plugin 'broken' (madlab_broken_plugin:Gen) cannot be loaded: "
        "ModuleNotFoundError: No module named 'no_such_dependency_for_madlab'"]
    assert not (tmp_path / "res").exists()
    # the other plugins are still listed, the broken one is marked
    code, out, _ = cli("generators")
    assert code == 0
    assert "gaussian" in out and "broken" in out and "cannot load" in out
