"""The third-party plugin example (examples/plugin) is found through the entry point and passes the
contract kit, ``madlab.testing``, exactly as its own test file runs it.

Nothing is installed: the kit's ``madlab_entry_point`` fixture (loaded as a pytest plugin in
conftest.py) writes the distribution metadata pip
would write (a ``.dist-info`` folder with ``entry_points.txt``) into a temporary folder on
``sys.path``, which is what ``importlib.metadata`` reads for an installed package.
"""
from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import pytest

from madlab.plugins import registry
from madlab.testing import Case, check_samples, fitted, tiny_data

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"
KDE_CASE = Case({"bandwidth": 0.3}, (2,), bad=({"bandwidth": -1.0}, {"max_points": 1}, {"max_points": 2}))
(KDE_TARGET,) = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]["entry-points"][
    "madlab.generators"].values()


@pytest.fixture
def installed_plugin(madlab_entry_point):
    madlab_entry_point("kde", KDE_TARGET, source_dir=PLUGIN)


def _example_test_module():
    """The example's own test file (examples/plugin/tests/test_kde.py), loaded as a module."""
    spec = importlib.util.spec_from_file_location("madlab_kde_example_tests", PLUGIN / "tests" / "test_kde.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The example's contract class, collected here as it is in the plugin's own repository; its tests
# resolve "kde" through the entry point, so they run with the plugin registered.
TestKDE = pytest.mark.usefixtures("installed_plugin")(_example_test_module().TestKDE)


def test_plugin_is_discovered_through_the_entry_point(installed_plugin):
    assert "kde" in registry.generator_names()
    assert registry.distributions()["kde"] in {"madlab-test-plugin", "madlab-kde"}  # or pip-installed
    cls = registry.get_generator_class("kde")
    assert cls.__module__ == "madlab_kde" and cls.name == "kde"
    assert cls.describe().startswith("Gaussian KDE")


def test_madlab_suite_reports_a_foreign_plugin_without_failing(installed_plugin):
    from test_generator_contract import test_every_shipped_generator_has_a_case

    with pytest.warns(UserWarning, match=r"kde \(madlab-(test-plugin|kde)\)"):
        test_every_shipped_generator_has_a_case()


def test_the_kit_fails_a_generator_that_breaks_the_contract(installed_plugin):
    """The kit can fail: a KDE whose samples ignore the seed, and one that accepts any bandwidth."""
    from madlab.testing import check_bad_params, check_determinism

    cls = registry.get_generator_class("kde")

    class Unseeded(cls):
        def sample(self, n, *, bias, seed):
            return super().sample(n, bias=bias, seed=0)

    with pytest.raises(AssertionError, match="different seed gives the same samples"):
        check_determinism("kde", KDE_CASE, cls=Unseeded)

    class Lenient(cls):
        class Params(cls.Params):
            model_config = {**cls.Params.model_config, "extra": "ignore"}

    with pytest.raises(AssertionError, match="passed the validation hook"):
        check_bad_params("kde", Case({}, (2,)), cls=Lenient)


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
def broken_plugin(madlab_entry_point, tmp_path):
    """A plugin whose module imports a dependency that is not installed."""
    (tmp_path / "madlab_broken_plugin.py").write_text("import no_such_dependency_for_madlab\n")
    madlab_entry_point("broken", "madlab_broken_plugin:Gen", source_dir=tmp_path)


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
