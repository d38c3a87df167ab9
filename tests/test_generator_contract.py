"""The plugin contract every registered generator passes (diffusers' SchedulerCommonTest pattern).

The suite runs once for every generator in the ``madlab.generators`` entry-point group with
the tiny configuration in ``CASES``. A new plugin gets the whole suite by adding one line::

    CASES["my-gen"] = [Case({"width": 4, "steps": 2}, (2,))]

A registered generator without a line fails ``test_every_registered_generator_has_a_case``.
The checks are plain functions (``check_*``) so that a third-party package's tests can run
them on its own generator too (see tests/test_plugin_example.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from madlab.checkpoint import load_state, save_state
from madlab.errors import ConfigError
from madlab.registry import generator_names, get_generator_class
from madlab.samples import Samples


@dataclass(frozen=True)
class Case:
    """A tiny configuration of one generator on one kind of data.

    params: hyper-parameters (small, so a fit takes well under a second);
    shape: one sample's shape, (d,) or (C, H, W), or (L,) for token data;
    num_classes: labels on the training data; vocab_size: set for token data (``tokens`` kind);
    bad: hyper-parameters the generator must reject with a clear error.
    """

    params: dict
    shape: tuple[int, ...]
    num_classes: int | None = None
    n_train: int = 64
    bad: tuple[dict, ...] = field(default_factory=tuple)
    vocab_size: int | None = None

    @property
    def id(self) -> str:
        return "x".join(map(str, self.shape)) + (f"-v{self.vocab_size}" if self.vocab_size else "")


CASES: dict[str, list[Case]] = {
    "gaussian": [Case({}, (2,)), Case({}, (3,))],
    "gmm": [Case({"n_components": 3, "max_iter": 20}, (2,), bad=({"n_components": 0}, {"covariance_type": "banana"}))],
    "gan": [Case({"width": 16, "depth": 2, "latent_dim": 2, "steps": 4, "batch_size": 16}, (2,),
                 bad=({"steps": 0}, {"objective": "hinge"}, {"ema": 1.5})),
            Case({"width": 4, "latent_dim": 4, "steps": 2, "batch_size": 8, "ema": 0.9}, (1, 8, 8), num_classes=10,
                 n_train=16, bad=({"pac": 16, "conditional": False}, {"pac": 2, "conditional": True})),
            Case({"objective": "wgan-gp", "width": 8, "depth": 1, "latent_dim": 2, "steps": 2, "batch_size": 16,
                  "n_critic": 2}, (2,))],
    "flow": [Case({"layers": 2, "hidden": 8, "epochs": 1, "batch_size": 16}, (2,),
                  bad=({"layers": 0}, {"levels": 9}, {"preset": "tpu"})),
             Case({"layers": 1, "hidden": 4, "levels": 2, "epochs": 1, "batch_size": 8}, (1, 8, 8), n_train=16)],
    "ngram": [Case({"order": 3}, (12,), vocab_size=7, bad=({"order": 0}, {"add_k": -1.0})),
              Case({"order": 1, "add_k": 0.5}, (5,), vocab_size=30)],
    "gpt": [Case({"n_layer": 1, "n_head": 2, "n_embd": 16, "steps": 3, "batch_size": 8}, (10,), vocab_size=7,
                 bad=({"n_layer": 0}, {"block_size": 5}, {"n_head": 3}, {"top_p": 1.5})),
            Case({"n_layer": 1, "n_head": 1, "n_embd": 8, "steps": 2, "batch_size": 4, "ema": 0.9, "top_k": 3,
                  "top_p": 0.9, "sample_batch": 5}, (6,), vocab_size=11, n_train=16)],
    "ddpm": [Case({"hidden": 16, "depth": 1, "steps": 3, "batch_size": 16, "sample_steps": 3}, (2,), num_classes=2,
                  bad=({"lr": -1}, {"sampler": "euler"}, {"cond_drop": 1.0})),
             Case({"channels": [8, 16], "layers_per_block": 1, "norm_groups": 4, "steps": 2, "batch_size": 8,
                   "sample_steps": 2}, (1, 8, 8), num_classes=10, n_train=16,
                  bad=({"norm_groups": 3}, {"channels": [8, 16, 16, 16, 16]}))],
}


# -- the checks ---------------------------------------------------------------------------------

def tiny_data(case: Case, seed: int = 0) -> Samples:
    """Structured toy data: two clusters (vectors), bright squares on dark images, in [-1, 1], or
    token rows of varying length (a cycle through the vocabulary with random jumps, then padding)."""
    rng = np.random.default_rng(seed)
    n = case.n_train
    if case.vocab_size:
        from madlab.tokenizer import pad

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


def build(name: str, case: Case, cls=None):
    cls = cls or get_generator_class(name)
    extra = {"vocab_size": case.vocab_size} if case.vocab_size else {}
    return cls(cls.Params(**case.params), data_shape=case.shape, num_classes=case.num_classes, device="cpu", **extra)


def fitted(name: str, case: Case, *, seed: int = 3, cls=None):
    gen = build(name, case, cls)
    gen.fit(tiny_data(case), seed=seed)
    return gen


def check_samples(samples: Samples, n: int, case: Case) -> None:
    assert isinstance(samples, Samples)
    assert samples.x.shape == (n,) + case.shape
    if case.vocab_size:
        from madlab.tokenizer import check_tokens

        assert samples.x.dtype == np.int64, "token samples are int64"
        problem = check_tokens(samples.x, case.vocab_size)
        assert problem is None, problem
        return
    assert np.issubdtype(samples.x.dtype, np.floating)
    assert np.isfinite(samples.x).all()
    if len(case.shape) == 3:
        assert samples.x.dtype == np.float32, "images must be float32"
        assert samples.x.min() >= -1.0 and samples.x.max() <= 1.0, "images must lie in [-1, 1]"
    if samples.y is not None:
        assert samples.y.dtype == np.int64 and samples.y.shape == (n,)
        assert case.num_classes is not None and 0 <= samples.y.min() and samples.y.max() < case.num_classes


def check_fit_and_sample(name: str, case: Case, cls=None) -> None:
    cls = cls or get_generator_class(name)
    assert cls.min_train_size(cls.Params(**case.params)) <= case.n_train
    gen = fitted(name, case, cls=cls)
    for bias in (1.0, 0.5):
        check_samples(gen.sample(17, bias=bias, seed=5), 17, case)


def check_state_round_trip(name: str, case: Case, tmp_path, cls=None) -> None:
    gen = fitted(name, case, cls=cls)
    state = gen.state_dict()
    assert state and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in state.values()), \
        "state_dict must be a flat dict of arrays/tensors"
    path = str(tmp_path / f"{name}.safetensors")
    save_state(state, path)
    fresh = build(name, case, cls)
    fresh.load_state_dict(load_state(path))
    for bias in (1.0, 0.5):
        a, b = gen.sample(23, bias=bias, seed=11), fresh.sample(23, bias=bias, seed=11)
        np.testing.assert_array_equal(a.x, b.x)
        assert (a.y is None) == (b.y is None)
        if a.y is not None:
            np.testing.assert_array_equal(a.y, b.y)
    # warm start: a loaded generator trains on and still samples correctly
    fresh.fit(tiny_data(case, seed=1), seed=4)
    check_samples(fresh.sample(9, bias=1.0, seed=0), 9, case)


def check_determinism(name: str, case: Case, cls=None) -> None:
    a, b = fitted(name, case, seed=7, cls=cls), fitted(name, case, seed=7, cls=cls)
    sa, sb = a.sample(19, bias=1.0, seed=2), b.sample(19, bias=1.0, seed=2)
    np.testing.assert_array_equal(sa.x, sb.x)
    np.testing.assert_array_equal(a.sample(19, bias=0.5, seed=2).x, a.sample(19, bias=0.5, seed=2).x)
    assert not np.array_equal(sa.x, a.sample(19, bias=1.0, seed=3).x), "a different seed gives the same samples"


def check_bad_params(name: str, case: Case, cls=None) -> None:
    """Bad hyper-parameters are refused by the validation hook (``Params``, ``resolve_params``,
    ``check``: what ``madlab validate`` calls), not first when the model is built, naming the key."""
    cls = cls or get_generator_class(name)
    shape = dict(data_shape=case.shape, num_classes=case.num_classes)
    for bad in ({"no_such_hyper_parameter": 1},) + tuple(case.bad):
        with pytest.raises((ValidationError, ConfigError)) as info:
            cls.check(cls.resolve_params(cls.Params(**{**case.params, **bad}), **shape), **shape)
        assert next(iter(bad)) in str(info.value), f"the error for {bad} does not name the parameter"


def check_resolution(name: str, case: Case, cls=None) -> None:
    """``resolve_params`` gives JSON-serialisable parameters (they go into config.json and the run id)
    that resolve to themselves, and the generator built from them uses exactly them."""
    cls = cls or get_generator_class(name)
    shape = dict(data_shape=case.shape, num_classes=case.num_classes)
    resolved = cls.resolve_params(cls.Params(**case.params), **shape)
    cls.check(resolved, **shape)
    dumped = resolved.model_dump(mode="json")
    again = cls.resolve_params(cls.Params.model_validate(dumped), **shape)
    assert again.model_dump(mode="json") == dumped, "resolving resolved parameters changed them"


CHECKS = [check_fit_and_sample, check_determinism, check_bad_params, check_resolution]


# -- the suite over every registered generator ----------------------------------------------------

def _registered_cases():
    for name in generator_names():
        for case in CASES.get(name, []):
            yield pytest.param(name, case, id=f"{name}-{case.id}")


def test_every_registered_generator_has_a_case():
    missing = [name for name in generator_names() if not CASES.get(name)]
    assert not missing, f"add a line to CASES in {__file__} for: {missing}"


@pytest.mark.parametrize("name,case", list(_registered_cases()))
def test_fit_and_sample(name, case):
    check_fit_and_sample(name, case)


@pytest.mark.parametrize("name,case", list(_registered_cases()))
def test_state_round_trip(name, case, tmp_path):
    check_state_round_trip(name, case, tmp_path)


@pytest.mark.parametrize("name,case", list(_registered_cases()))
def test_determinism(name, case):
    check_determinism(name, case)


@pytest.mark.parametrize("name,case", list(_registered_cases()))
def test_bad_hyper_parameters(name, case):
    check_bad_params(name, case)


@pytest.mark.parametrize("name,case", list(_registered_cases()))
def test_resolution(name, case):
    check_resolution(name, case)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
