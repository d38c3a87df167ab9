"""The plugin contract, run on every generator madlab ships (diffusers' SchedulerCommonTest pattern).

The checks live in the package, ``madlab.testing`` (a third-party plugin imports them from an
installed madlab: see tests/test_plugin_example.py); this file only supplies a tiny configuration
per shipped generator. A new generator shipped with madlab adds one line to ``CASES`` and one class::

    CASES["my-gen"] = [Case({"width": 4, "steps": 2}, (2,))]

A shipped generator without a case fails ``test_every_shipped_generator_has_a_case``. Generators
registered by *other* installed distributions are reported (a warning naming them), not failed:
their own tests run the kit on them.
"""
from __future__ import annotations

import warnings

import pytest

from madlab.plugins.registry import distributions
from madlab.testing import Case, GeneratorContract

CASES: dict[str, list[Case]] = {
    "gaussian": [Case({}, (2,)), Case({"fit": "mle"}, (3,), bad=({"fit": "biased"},))],
    "gmm": [Case({"n_components": 3, "max_iter": 20}, (2,), bad=({"n_components": 0}, {"covariance_type": "banana"}))],
    "gan": [Case({"width": 16, "depth": 2, "latent_dim": 2, "steps": 4, "batch_size": 16}, (2,),
                 bad=({"steps": 0}, {"objective": "hinge"}, {"ema": 1.5})),
            Case({"width": 4, "latent_dim": 4, "steps": 2, "batch_size": 8, "ema": 0.9}, (1, 8, 8), num_classes=10,
                 n_train=16, bad=({"pac": 16, "conditional": False}, {"pac": 2, "conditional": True})),
            Case({"objective": "wgan-gp", "width": 8, "depth": 1, "latent_dim": 2, "steps": 2, "batch_size": 16,
                  "n_critic": 2}, (2,))],
    "flow": [Case({"layers": 2, "hidden": 8, "epochs": 1, "batch_size": 16}, (2,),
                  bad=({"layers": 0}, {"levels": 9}, {"preset": "tpu"}, {"coupling": "exp"}, {"bins": 1})),
             Case({"coupling": "affine", "layers": 2, "hidden": 8, "epochs": 1, "batch_size": 16}, (2,)),
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




#: shipped generators whose contract class lives in their own test file (hf-lm's cases need a model
#: folder that test file writes first)
COVERED_ELSEWHERE = {"hf-lm": "tests/test_hf_lm.py::TestHFLM"}


def shipped_generators() -> list[str]:
    """Generators of the ``madlab`` distribution itself (not of plugins installed beside it)."""
    return sorted(name for name, dist in distributions().items() if dist == "madlab")


def test_every_shipped_generator_has_a_case():
    shipped = shipped_generators()
    assert {"gaussian", "gmm", "gan", "flow", "ddpm", "ngram", "gpt"} <= set(shipped)
    missing = [name for name in shipped if not CASES.get(name) and name not in COVERED_ELSEWHERE]
    assert not missing, f"add a line to CASES in {__file__} for: {missing}"
    foreign = {name: dist for name, dist in distributions().items() if dist != "madlab"}
    if foreign:
        warnings.warn(f"generator plugins from other distributions, not covered here (their own tests run "
                      f"madlab.testing on them): {', '.join(f'{n} ({d})' for n, d in sorted(foreign.items()))}")


class TestGaussian(GeneratorContract):
    generator, cases = "gaussian", CASES["gaussian"]


class TestGMM(GeneratorContract):
    generator, cases = "gmm", CASES["gmm"]


class TestGAN(GeneratorContract):
    generator, cases = "gan", CASES["gan"]


class TestFlow(GeneratorContract):
    generator, cases = "flow", CASES["flow"]


class TestDDPM(GeneratorContract):
    generator, cases = "ddpm", CASES["ddpm"]


class TestNgram(GeneratorContract):
    generator, cases = "ngram", CASES["ngram"]


class TestGPT(GeneratorContract):
    generator, cases = "gpt", CASES["gpt"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")
