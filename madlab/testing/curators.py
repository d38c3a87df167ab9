"""The curator contract kit: the checks every ``madlab.curators`` plugin passes (``madlab.testing``).

``tests/test_curator_contract.py`` runs them on every curator in the ``madlab.curators`` group; a
plugin's whole test file can be::

    from madlab.testing import CuratorCase, CuratorContract

    class TestMine(CuratorContract):
        cases = [CuratorCase({"name": "mine", "keep": 0.5}, bad=({"name": "mine", "keep": 2},))]

Each check builds the curator exactly as the loop does (from a ``{name: ..., <params>}`` mapping,
through the registry and the validate-time check); they are plain functions too (``check_curate``,
``check_curator_determinism``, ``check_curator_bad_params``, each taking a case).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.curation.params import make_curator_params, validate_curation
from madlab.datasets import open_dataset
from madlab.testing.contract import Contract


@dataclass(frozen=True)
class CuratorCase:
    """A small configuration of one curator on one dataset.

    section: the ``loop.curation`` mapping (with ``name``); dataset: ``{name: ..., <params>}``;
    bad: sections the curator must refuse with a ConfigError naming a ``loop.curation`` key;
    wrong_data: datasets on which ``madlab validate`` must refuse this section.
    """

    section: dict
    dataset: dict = field(default_factory=lambda: {"name": "gaussian", "dim": 2})
    n_keep: int = 50
    n_real: int = 200
    bad: tuple[dict, ...] = ()
    wrong_data: tuple[dict, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.section['name']}-{self.dataset['name']}"


def make_dataset(spec: dict):
    """The dataset a ``{name: ..., <params>}`` mapping names."""
    return open_dataset(spec)


def build_curator(case: CuratorCase, device: str = "cpu"):
    """(curator, dataset) of a case, built as the loop builds them (validated first)."""
    dataset = make_dataset(case.dataset)
    validate_curation(case.section, dataset)
    cls, params = make_curator_params(case.section)
    return cls(params, dataset=dataset, device=device), dataset


def _inputs(case: CuratorCase, dataset, seed: int = 0):
    """Candidates: real draws, slightly shrunk (a "model" that under-disperses); and real data."""
    cls, params = make_curator_params(case.section)
    n_candidates = int(np.ceil(cls.candidates_per_kept(params) * case.n_keep))
    if cls.rejects:
        n_candidates = int(params.max_oversampling * case.n_keep)
    raw = dataset.draw(n_candidates, seed=seed + 1, offset=0 if dataset.size else 10_000)
    x = raw.x * 0.8 if dataset.kind == "vector" else raw.x
    return Samples(x.astype(raw.x.dtype), raw.y), dataset.draw(case.n_real, seed=seed + 2)


def check_curate(case: CuratorCase) -> None:
    """Kept samples: n_keep of them (a rejecting curator: at most), same shape/dtype/labels as the
    candidates, finite, in range; a selecting curator's index points at the kept candidates."""
    curator, dataset = build_curator(case)
    candidates, real = _inputs(case, dataset)
    out = curator.curate(candidates, case.n_keep, real=real, seed=123)
    n = len(out.samples)
    assert n == case.n_keep or (type(curator).rejects and n <= case.n_keep), (n, case.n_keep)
    assert out.samples.x.shape[1:] == candidates.x.shape[1:]
    assert out.samples.x.dtype == candidates.x.dtype
    assert np.isfinite(out.samples.x).all()
    assert (out.samples.y is None) == (candidates.y is None)
    if dataset.kind == "image":
        assert out.samples.x.min() >= -1 and out.samples.x.max() <= 1
    if out.index is not None:
        assert len(out.index) == n
        np.testing.assert_array_equal(out.samples.x, candidates.x[out.index])
        if candidates.y is not None:
            np.testing.assert_array_equal(out.samples.y, candidates.y[out.index])
    examined = out.examined if out.examined is not None else len(candidates)
    assert n <= examined <= len(candidates)
    for value in (out.reward_before, out.reward_after):
        assert value is None or np.isfinite(value)


def check_curator_determinism(case: CuratorCase) -> None:
    """Same inputs and seed -> the same bits, from a freshly built curator."""
    runs = []
    for _ in range(2):
        curator, dataset = build_curator(case)
        candidates, real = _inputs(case, dataset)
        out = curator.curate(candidates, case.n_keep, real=real, seed=7)
        runs.append(out)
    np.testing.assert_array_equal(runs[0].samples.x, runs[1].samples.x)
    assert (runs[0].index is None) == (runs[1].index is None)
    if runs[0].index is not None:
        np.testing.assert_array_equal(runs[0].index, runs[1].index)


def check_curator_bad_params(case: CuratorCase) -> None:
    """Each bad section and each unsuitable dataset is refused with one ConfigError line naming
    a loop.curation key; an unknown key is refused too."""
    dataset = make_dataset(case.dataset)
    for section in (*case.bad, {**case.section, "no_such_key": 1}):
        try:
            validate_curation(section, dataset)
        except ConfigError as exc:
            text = str(exc)
            assert text.startswith("loop.curation"), text
            assert "\n" not in text, text
        else:
            raise AssertionError(f"accepted bad curation section {section}")
    for wrong in case.wrong_data:
        try:
            validate_curation(case.section, make_dataset(wrong))
        except ConfigError as exc:
            assert str(exc).startswith("loop.curation"), str(exc)
        else:
            raise AssertionError(f"accepted {case.section} on dataset {wrong}")


#: every check, each taking a case
CURATOR_CHECKS = (check_curate, check_curator_determinism, check_curator_bad_params)


class CuratorContract(Contract):
    """Subclass with ``cases`` (:class:`CuratorCase`): pytest collects one test per check and case."""

    cases: ClassVar[Sequence[CuratorCase]] = ()

    def test_curate(self, case):
        check_curate(case)

    def test_determinism(self, case):
        check_curator_determinism(case)

    def test_bad_params(self, case):
        check_curator_bad_params(case)


__all__ = ["CURATOR_CHECKS", "CuratorCase", "CuratorContract", "build_curator", "check_curate",
           "check_curator_bad_params", "check_curator_determinism", "make_dataset"]
