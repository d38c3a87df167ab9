"""madlab's generator contract on the KDE plugin: the whole test file a plugin needs.

Run from examples/plugin after ``pip install -e .`` (and madlab's test extra): ``python -m pytest tests``.
"""
from madlab.testing import Case, GeneratorContract


class TestKDE(GeneratorContract):
    generator = "kde"  # found through the entry point in pyproject.toml
    cases = [Case({"bandwidth": 0.3}, (2,), bad=({"bandwidth": -1.0}, {"max_points": 1}, {"max_points": 2})),
             Case({}, (3,), n_train=20)]
