"""The shape every contract kit shares: a ``Case`` dataclass, plain ``check_*`` functions, and a
pytest base class that turns them into one test per check and case.

A kit's class (``GeneratorContract``, ``CuratorContract``, ``DatasetContract``) subclasses
:class:`Contract` with ``test_*`` methods taking ``case``; a plugin's test file subclasses the kit's
class and sets ``cases`` (and, for generators and datasets, which plugin). ``__init_subclass__`` gives
each subclass its own copies of the ``test_*`` methods parametrized over its ``cases`` (ids from
``Case.id``), so no pytest hook or conftest is needed.
"""
from __future__ import annotations

import functools
from typing import ClassVar, Sequence

import pytest


class Contract:
    """Base of the kits' pytest classes (see the module docstring)."""

    cases: ClassVar[Sequence] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kit = next(base for base in cls.__mro__ if Contract in base.__bases__)
        if cls is kit:
            return
        cases = list(getattr(cls, "cases", ()))
        ids = [f"{c.id}-{i}" if [d.id for d in cases].count(c.id) > 1 else c.id for i, c in enumerate(cases)]
        for attr in [a for a in dir(kit) if a.startswith("test_")]:
            base = getattr(kit, attr)

            @functools.wraps(base)
            def method(self, *args, _base=base, **kw):
                return _base(self, *args, **kw)

            setattr(cls, attr, pytest.mark.parametrize("case", cases, ids=ids)(method))
