"""README's plugin section shows a complete generator: it passes the generator contract kit as written."""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from madlab.testing import (Case, check_bad_params, check_determinism, check_fit_and_sample, check_resolution,
                            check_state_round_trip)

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_generator():
    section = README.read_text().split("## Write a generator plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "madlab.plugins" in code and "_torch" not in code and "madlab.core" not in code  # public names only
    module = types.ModuleType("readme_plugin")
    sys.modules["readme_plugin"] = module  # pydantic resolves the Params annotations through the module
    try:
        exec(compile(code, str(README), "exec"), module.__dict__)
    finally:
        sys.modules.pop("readme_plugin", None)
    return module.DiagonalGaussian


CASE = Case({"min_var": 1e-4}, (3,), bad=({"min_var": 0.0},))


@pytest.mark.parametrize("check", [check_fit_and_sample, check_determinism, check_bad_params, check_resolution],
                         ids=lambda c: c.__name__)
def test_the_readme_generator_passes_the_contract(check):
    cls = _readme_generator()
    check(cls.name, CASE, cls=cls)


def test_the_readme_generator_round_trips_its_state(tmp_path):
    cls = _readme_generator()
    check_state_round_trip(cls.name, CASE, tmp_path, cls=cls)
    assert cls.min_train_size(cls.Params()) == 2
