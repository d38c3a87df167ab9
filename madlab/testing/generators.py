"""The generator contract kit: the checks every ``madlab.generators`` plugin must pass (``madlab.testing``).

madlab's own suite (``tests/test_generator_contract.py``) runs these checks on every shipped
generator; a third-party plugin runs the same ones from its own tests, against an installed madlab
(needs pytest: ``pip install "madlab[test]"``). The whole test file of a plugin can be::

    from madlab.testing import Case, GeneratorContract

    class TestKDE(GeneratorContract):
        generator = "kde"            # the entry-point name (or the class itself)
        cases = [Case({"bandwidth": 0.3}, (2,), bad=({"bandwidth": -1.0},))]

``GeneratorContract`` turns into one pytest test per check and case (``test_fit_and_sample``,
``test_state_round_trip``, ``test_determinism``, ``test_bad_params``, ``test_resolution``). The
checks are also plain functions, ``check_*(name, case, ..., cls=None)``: ``name`` is the registered
name (looked up in the entry-point group unless ``cls`` is given) and each raises ``AssertionError``
(or the generator's own exception) when the generator breaks the contract. Loading the module as a
pytest plugin (``pytest_plugins = ["madlab.testing"]`` in a ``conftest.py``, or ``-p madlab.testing``)
adds the fixture :func:`madlab_entry_point`, which registers a not-yet-installed plugin for a test.

The contract, in the order the checks test it:

- ``fit`` on tiny data, then ``sample`` with λ ∈ {1, 0.5}: ``Samples`` of the requested shape, finite
  floats, images float32 in [-1, 1], labels int64 in range when the data is labelled, and
  ``min_train_size(params)`` no larger than the case's training set;
- ``state_dict`` is a flat dict of arrays/tensors that survives safetensors, and a fresh instance that
  loads it samples identically; a loaded instance trains on (warm start);
- a seed fixes everything (same seed, same model and samples; another seed, other samples);
- bad hyper-parameters are refused with an error naming the key: an unknown key and every entry of
  ``Case.bad``, by the validation hook ``madlab validate`` calls before anything runs: ``Params``
  (pydantic ``ValidationError``), then the classmethods ``resolve_params`` and ``check``
  (``madlab.core.errors.ConfigError``), never first by the constructor;
- ``resolve_params`` of the good hyper-parameters is JSON-serialisable, idempotent and passes ``check``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from pydantic import ValidationError

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.core.tokenizer import check_tokens, pad
from madlab.plugins.generator import Generator
from madlab.plugins.registry import get_generator_class
from madlab.store.checkpoint import load_state, save_state
from madlab.testing.contract import Contract


@dataclass(frozen=True)
class Case:
    """A tiny configuration of one generator on one kind of data.

    params: hyper-parameters (small, so a fit takes well under a second);
    shape: one sample's shape, ``(d,)`` for vectors, ``(C, H, W)`` for images, ``(L,)`` for tokens;
    num_classes: labels on the training data (``None``: unlabelled);
    vocab_size: set for token data (the ``tokens`` kind: int64 rows padded with -1);
    n_train: size of the training set the checks fit on;
    bad: hyper-parameter overrides the generator must reject, each naming the offending key first.
    """

    params: dict
    shape: tuple[int, ...]
    num_classes: int | None = None
    n_train: int = 64
    bad: tuple[dict, ...] = field(default_factory=tuple)
    vocab_size: int | None = None

    @property
    def id(self) -> str:
        """A short test id: the shape, e.g. ``2``, ``1x8x8`` or ``12-v7`` (tokens, vocabulary 7)."""
        return "x".join(map(str, self.shape)) + (f"-v{self.vocab_size}" if self.vocab_size else "")


def generator_class(name: str, cls: type[Generator] | None = None) -> type[Generator]:
    """``cls`` if given, else the class registered under ``name`` in ``madlab.generators``."""
    if cls is not None:
        return cls
    return get_generator_class(name)


def tiny_data(case: Case, seed: int = 0) -> Samples:
    """Structured toy data: two clusters (vectors), bright squares on dark images, in [-1, 1], or
    token rows of varying length (a cycle through the vocabulary with random jumps, then padding)."""
    rng = np.random.default_rng(seed)
    n = case.n_train
    if case.vocab_size:
        length = case.shape[0]
        rows = []
        for _ in range(n):
            k = int(rng.integers(1, length + 3))  # some rows fill the context (cut), others end early
            start = int(rng.integers(case.vocab_size))
            steps = np.where(rng.random(k) < 0.8, 1, rng.integers(0, case.vocab_size, k))
            rows.append((start + np.cumsum(steps)) % case.vocab_size)
        return Samples(pad(rows, length))
    labels = rng.integers(0, case.num_classes, n) if case.num_classes else rng.integers(0, 2, n)
    if len(case.shape) == 1:
        x = rng.standard_normal((n,) + case.shape) * 0.3 + np.where(labels % 2, 1.0, -1.0)[:, None]
    else:
        c, h, w = case.shape
        x = np.full((n, c, h, w), -0.9) + 0.05 * rng.standard_normal((n, c, h, w))
        for i, label in enumerate(labels):
            r, s = label % (h - 2), (label * 3) % (w - 2)
            x[i, :, r:r + 3, s:s + 3] = 0.9
        x = np.clip(x, -1, 1)
    y = labels.astype(np.int64) if case.num_classes else None
    return Samples(x.astype(np.float32), y)


def build(name: str, case: Case, cls: type[Generator] | None = None) -> Generator:
    """An unfitted instance with the case's hyper-parameters, on CPU."""
    cls = generator_class(name, cls)
    extra = {"vocab_size": case.vocab_size} if case.vocab_size else {}
    return cls(cls.Params(**case.params), data_shape=case.shape, num_classes=case.num_classes, device="cpu", **extra)


def fitted(name: str, case: Case, *, seed: int = 3, cls: type[Generator] | None = None) -> Generator:
    """An instance fitted on :func:`tiny_data` with ``seed``."""
    gen = build(name, case, cls)
    gen.fit(tiny_data(case), seed=seed)
    return gen


def check_samples(samples: Samples, n: int, case: Case) -> None:
    """``samples`` is what ``sample(n, ...)`` must return for data shaped like ``case``."""
    assert isinstance(samples, Samples), f"sample() returned {type(samples).__name__}, not madlab.core.samples.Samples"
    assert samples.x.shape == (n,) + case.shape, f"samples have shape {samples.x.shape}, expected {(n,) + case.shape}"
    if case.vocab_size:
        assert samples.x.dtype == np.int64, "token samples are int64"
        problem = check_tokens(samples.x, case.vocab_size)
        assert problem is None, problem
        return
    assert np.issubdtype(samples.x.dtype, np.floating), f"samples are {samples.x.dtype}, not floats"
    assert np.isfinite(samples.x).all(), "samples contain NaN or inf"
    if len(case.shape) == 3:
        assert samples.x.dtype == np.float32, "images must be float32"
        assert samples.x.min() >= -1.0 and samples.x.max() <= 1.0, "images must lie in [-1, 1]"
    if samples.y is not None:
        assert samples.y.dtype == np.int64 and samples.y.shape == (n,), "labels must be int64 of shape (n,)"
        assert case.num_classes is not None, "labels returned for unlabelled training data"
        assert 0 <= samples.y.min() and samples.y.max() < case.num_classes, "labels out of range"


def check_fit_and_sample(name: str, case: Case, cls: type[Generator] | None = None) -> None:
    """Fits on tiny data and samples valid ``Samples`` with λ = 1 and λ = 0.5."""
    cls = generator_class(name, cls)
    assert cls.min_train_size(cls.Params(**case.params)) <= case.n_train, \
        f"min_train_size exceeds the case's n_train={case.n_train}"
    gen = fitted(name, case, cls=cls)
    for bias in (1.0, 0.5):
        check_samples(gen.sample(17, bias=bias, seed=5), 17, case)


def check_state_round_trip(name: str, case: Case, tmp_path: str | Path, cls: type[Generator] | None = None) -> None:
    """state_dict -> safetensors file -> a fresh instance samples identically, then trains on."""
    gen = fitted(name, case, cls=cls)
    state = gen.state_dict()
    assert state and all(isinstance(v, np.ndarray) or _is_tensor(v) for v in state.values()), \
        "state_dict must be a flat dict of arrays/tensors"
    path = str(Path(tmp_path) / f"{name}.safetensors")
    save_state(state, path)
    fresh = build(name, case, cls)
    fresh.load_state_dict(load_state(path))
    for bias in (1.0, 0.5):
        a, b = gen.sample(23, bias=bias, seed=11), fresh.sample(23, bias=bias, seed=11)
        np.testing.assert_array_equal(a.x, b.x, err_msg="a reloaded generator samples differently")
        assert (a.y is None) == (b.y is None)
        if a.y is not None:
            np.testing.assert_array_equal(a.y, b.y)
    fresh.fit(tiny_data(case, seed=1), seed=4)  # warm start
    check_samples(fresh.sample(9, bias=1.0, seed=0), 9, case)


def check_determinism(name: str, case: Case, cls: type[Generator] | None = None) -> None:
    """The same seeds give the same model and samples; another sampling seed gives other samples."""
    a, b = fitted(name, case, seed=7, cls=cls), fitted(name, case, seed=7, cls=cls)
    sa, sb = a.sample(19, bias=1.0, seed=2), b.sample(19, bias=1.0, seed=2)
    np.testing.assert_array_equal(sa.x, sb.x, err_msg="two fits with one seed sample differently")
    np.testing.assert_array_equal(a.sample(19, bias=0.5, seed=2).x, a.sample(19, bias=0.5, seed=2).x)
    assert not np.array_equal(sa.x, a.sample(19, bias=1.0, seed=3).x), "a different seed gives the same samples"


def check_bad_params(name: str, case: Case, cls: type[Generator] | None = None) -> None:
    """An unknown key and each ``case.bad`` override are refused by the validation hook, naming the key.

    The hook is what ``madlab validate`` and the start of ``madlab run`` call before anything runs:
    ``Params`` (pydantic ``ValidationError``), then ``resolve_params`` and ``check``
    (``madlab.core.errors.ConfigError``). A value refused only later, when the model is built or fitted,
    fails this check: a sweep would then stop half-way instead of at once.
    """

    cls = generator_class(name, cls)
    shape = dict(data_shape=case.shape, num_classes=case.num_classes)
    for bad in ({"no_such_hyper_parameter": 1},) + tuple(case.bad):
        key = next(iter(bad))
        try:
            cls.check(cls.resolve_params(cls.Params(**{**case.params, **bad}), **shape), **shape)
        except (ValidationError, ConfigError) as exc:
            assert key in str(exc), f"the error for {bad} does not name the parameter: {exc}"
        else:
            raise AssertionError(f"{bad} passed the validation hook (Params, resolve_params, check): "
                                 f"madlab validate would accept it")


def check_resolution(name: str, case: Case, cls: type[Generator] | None = None) -> None:
    """``resolve_params`` gives JSON-serialisable parameters (they go into config.json and the run id)
    that resolve to themselves and pass ``check``."""
    cls = generator_class(name, cls)
    shape = dict(data_shape=case.shape, num_classes=case.num_classes)
    resolved = cls.resolve_params(cls.Params(**case.params), **shape)
    cls.check(resolved, **shape)
    dumped = resolved.model_dump(mode="json")
    again = cls.resolve_params(cls.Params.model_validate(dumped), **shape)
    assert again.model_dump(mode="json") == dumped, "resolving resolved parameters changed them"


#: every check taking (name, case, cls=...); check_state_round_trip also takes tmp_path.
CHECKS = [check_fit_and_sample, check_determinism, check_bad_params, check_resolution]


def check_generator(name: str, case: Case, tmp_path: str | Path, cls: type[Generator] | None = None) -> None:
    """Run the whole contract on one case."""
    for check in CHECKS:
        check(name, case, cls=cls)
    check_state_round_trip(name, case, tmp_path, cls=cls)


def _is_tensor(value) -> bool:
    try:
        import torch  # optional: a numpy-only plugin may run without torch
    except ImportError:  # a numpy-only plugin in an environment without torch
        return False
    return isinstance(value, torch.Tensor)


class GeneratorContract(Contract):
    """Subclass with ``generator`` (entry-point name or class) and ``cases``: pytest collects the contract
    (one test per check and case, :class:`madlab.testing.contract.Contract`)."""

    generator: ClassVar[str | type[Generator]]
    cases: ClassVar[Sequence[Case]] = ()

    def _name_and_class(self):
        gen = type(self).generator
        if isinstance(gen, str):
            return gen, generator_class(gen)
        return gen.name, gen

    def test_fit_and_sample(self, case):
        name, cls = self._name_and_class()
        check_fit_and_sample(name, case, cls=cls)

    def test_state_round_trip(self, case, tmp_path):
        name, cls = self._name_and_class()
        check_state_round_trip(name, case, tmp_path, cls=cls)

    def test_determinism(self, case):
        name, cls = self._name_and_class()
        check_determinism(name, case, cls=cls)

    def test_bad_params(self, case):
        name, cls = self._name_and_class()
        check_bad_params(name, case, cls=cls)

    def test_resolution(self, case):
        name, cls = self._name_and_class()
        check_resolution(name, case, cls=cls)


__all__ = ["Case", "CHECKS", "GeneratorContract", "build", "check_bad_params", "check_resolution",
           "check_determinism", "check_fit_and_sample", "check_generator", "check_samples",
           "check_state_round_trip", "fitted", "generator_class", "tiny_data"]
