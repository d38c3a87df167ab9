"""The dataset contract kit: the checks every ``madlab.datasets`` plugin passes (``madlab.testing``).

``tests/test_dataset_contract.py`` runs them on every dataset madlab ships; a plugin's whole test
file can be::

    from madlab.testing import DatasetCase, DatasetContract

    class TestRings(DatasetContract):
        cases = [DatasetCase("rings", {"radius": 2.0}, bad=({"radius": -1.0},))]

The contract (the loop relies on each point):

- the name is registered in the ``madlab.datasets`` entry-point group, to a
  :class:`madlab.plugins.Dataset` whose ``name`` is that name and whose ``kind`` is ``vector``,
  ``image`` or ``tokens``;
- ``draw(n, seed=, offset=)`` returns ``Samples`` of shape ``(n,) + shape``: finite floats for vectors,
  float32 in [-1, 1] for images, int64 token ids below ``vocab_size`` padded with -1 for tokens,
  int64 labels in ``[0, num_classes)`` where labelled;
- a draw is a pure function of ``(n, seed, offset)`` (bit-for-bit resume needs it), another seed or a
  disjoint offset range gives other rows (``fresh-real`` needs it);
- ``eval_set(n, seed=)`` is a deterministic set of the same shape;
- bad parameters (an unknown key, every entry of ``DatasetCase.bad``) are refused by ``Params`` or by
  the constructor, before anything is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
from pydantic import ValidationError

from madlab.core.errors import MadlabError
from madlab.core.samples import Samples
from madlab.plugins.dataset import Dataset
from madlab.plugins.registry import get_dataset_class
from madlab.testing.contract import Contract

KINDS = ("vector", "image", "tokens")


@dataclass(frozen=True)
class DatasetCase:
    """A small configuration of one dataset.

    name: its entry-point name; params: its parameters (small, so opening it is quick);
    n: rows each check draws; bad: parameter sets the dataset must refuse.
    """

    name: str
    params: dict = field(default_factory=dict)
    n: int = 16
    bad: tuple[dict, ...] = ()

    @property
    def id(self) -> str:
        return self.name


def open_case(case: DatasetCase) -> Dataset:
    """The dataset of a case, opened through the registry as a run opens it."""
    cls = get_dataset_class(case.name)
    return cls(cls.Params.model_validate(case.params))


def check_registered(case: DatasetCase) -> None:
    """The entry point names a Dataset of that ``name`` and a known ``kind``."""
    cls = get_dataset_class(case.name)
    assert isinstance(cls, type) and issubclass(cls, Dataset), cls
    assert cls.name == case.name, f"registered as {case.name!r} but its name is {cls.name!r}"
    assert cls.kind in KINDS, f"kind {cls.kind!r} is none of {KINDS}"


def check_rows(samples: Samples, n: int, dataset: Dataset) -> None:
    """``samples`` are ``n`` rows of ``dataset``'s shape, with the dtype and range of its kind."""
    assert isinstance(samples, Samples), f"draw returned {type(samples).__name__}, not madlab.plugins.Samples"
    x = np.asarray(samples.x)
    assert x.shape == (n,) + tuple(dataset.shape), f"rows of shape {x.shape}, expected {(n,) + tuple(dataset.shape)}"
    if dataset.kind == "tokens":
        assert x.dtype == np.int64, f"token rows are int64, got {x.dtype}"
        assert x.min(initial=0) >= -1 and x.max(initial=0) < dataset.vocab_size, "token ids outside [-1, vocab_size)"
    else:
        assert np.issubdtype(x.dtype, np.floating) and np.isfinite(x).all(), "rows are finite floats"
    if dataset.kind == "image":
        assert x.dtype == np.float32 and x.min(initial=0) >= -1 and x.max(initial=0) <= 1, "images: float32 in [-1, 1]"
    if samples.y is not None:
        y = np.asarray(samples.y)
        assert y.dtype == np.int64 and y.shape == (n,), "labels: int64, one per row"
        assert dataset.num_classes is not None and 0 <= y.min() and y.max() < dataset.num_classes


def check_draw(case: DatasetCase) -> None:
    """A draw has the shape, dtype and range of the dataset's kind."""
    dataset = open_case(case)
    check_rows(dataset.draw(case.n, seed=0), case.n, dataset)
    check_rows(dataset.draw(case.n, seed=1, offset=case.n), case.n, dataset)


def check_dataset_determinism(case: DatasetCase) -> None:
    """The same (n, seed, offset) gives the same bits, from a freshly opened dataset too; another
    seed, or the next offset range, gives other rows."""
    first, again = open_case(case), open_case(case)
    a = first.draw(case.n, seed=3)
    np.testing.assert_array_equal(a.x, first.draw(case.n, seed=3).x)
    np.testing.assert_array_equal(a.x, again.draw(case.n, seed=3).x)
    assert not np.array_equal(a.x, first.draw(case.n, seed=4).x), "another seed gave the same rows"
    assert not np.array_equal(a.x, first.draw(case.n, seed=3, offset=case.n).x), "the next offset range repeats rows"


def check_eval_set(case: DatasetCase) -> None:
    """The metrics' reference set: the dataset's rows, the same for the same seed."""
    dataset = open_case(case)
    reference = dataset.eval_set(case.n, seed=0)
    check_rows(reference, case.n, dataset)
    np.testing.assert_array_equal(reference.x, open_case(case).eval_set(case.n, seed=0).x)


def check_dataset_bad_params(case: DatasetCase) -> None:
    """An unknown key and every ``bad`` parameter set are refused before anything is drawn."""
    cls = get_dataset_class(case.name)
    for params in ({**case.params, "no_such_key": 1}, *case.bad):
        try:
            cls(cls.Params.model_validate(params))
        except (ValidationError, MadlabError):
            continue
        raise AssertionError(f"dataset {case.name!r} accepted bad parameters {params}")


#: every check, each taking a case
DATASET_CHECKS = (check_registered, check_draw, check_dataset_determinism, check_eval_set, check_dataset_bad_params)


class DatasetContract(Contract):
    """Subclass with ``cases`` (:class:`DatasetCase`): pytest collects one test per check and case."""

    cases: ClassVar[Sequence[DatasetCase]] = ()

    def test_registered(self, case):
        check_registered(case)

    def test_draw(self, case):
        check_draw(case)

    def test_determinism(self, case):
        check_dataset_determinism(case)

    def test_eval_set(self, case):
        check_eval_set(case)

    def test_bad_params(self, case):
        check_dataset_bad_params(case)


__all__ = ["DATASET_CHECKS", "DatasetCase", "DatasetContract", "check_dataset_bad_params",
           "check_dataset_determinism", "check_draw", "check_eval_set", "check_registered", "check_rows",
           "open_case"]
