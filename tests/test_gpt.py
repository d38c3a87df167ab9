"""The gpt generator: the KV-cache sampler equals full recomputation, it learns, its truncation rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from madlab.samples import Samples
from madlab.tokenizer import PAD, pad
from madlab_generators.gpt import GPTGenerator, _filtered_probs

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "batch_size": 16, "lr": 3e-3, "warmup": 10}


def _gpt(steps=5, width=10, vocab=5, **extra):
    return GPTGenerator(GPTGenerator.Params(**{**TINY, "steps": steps, **extra}), data_shape=(width,), vocab_size=vocab)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_kv_cache_sampling_equals_full_recomputation():
    rng = np.random.default_rng(0)
    gen = _gpt(steps=20)
    gen.fit(Samples(pad([rng.integers(0, 5, rng.integers(1, 12)) for _ in range(40)], 10)), seed=1)
    for bias in (1.0, 0.7):
        x = gen.sample(12, bias=bias, seed=3).x
        uniforms = torch.rand(12, 10, generator=_cpu_generator(3), dtype=torch.float64)
        model = gen.model.eval()
        with torch.no_grad():
            for i in range(12):
                seq = [5]
                for pos in range(10):
                    logits = model(torch.tensor([seq]))[:, -1].double()
                    cdf = _filtered_probs(logits, bias, None, None).cumsum(-1)
                    tok = int(torch.searchsorted(cdf, (uniforms[i, pos] * cdf[:, -1]).unsqueeze(1), right=True).clamp(max=5))
                    if tok == 5:
                        assert (x[i, pos:] == PAD).all()
                        break
                    assert x[i, pos] == tok
                    seq.append(tok)


def _cpu_generator(seed):
    from madlab_generators._torch import torch_generator

    return torch_generator(seed)


def test_learns_a_repeated_document_and_its_end():
    row = [0, 1, 2, 3, 4, 0, 1, 2]
    gen = _gpt(steps=150)
    gen.fit(Samples(pad([row] * 32, 10)), seed=0)
    greedy = gen.sample(4, bias=0.0, seed=0).x
    assert (greedy == np.array(row + [PAD, PAD])).all()
    total, count = gen.log_likelihood(pad([row], 10))
    assert count == len(row) + 1  # tokens + the end marker
    assert math.exp(-total / count) < 1.2  # near-certain after training; an untrained model is ≈ 6
    untrained = _gpt(steps=1)
    untrained.fit(Samples(pad([row], 10)), seed=0)
    assert math.exp(-untrained.log_likelihood(pad([row], 10))[0] / count) > 4


def test_warm_start_continues_training():
    data = Samples(pad([[1, 2, 3]] * 8, 6))
    gen = _gpt(steps=4, width=6)
    gen.fit(data, seed=0)
    again = _gpt(steps=4, width=6)
    again.load_state_dict(gen.state_dict())
    assert again.step_count == 4
    # exact: same path — loaded weights are the saved bits; same seed and batch
    np.testing.assert_array_equal(again.sample(5, bias=1.0, seed=1).x, gen.sample(5, bias=1.0, seed=1).x)
    again.fit(data, seed=1)
    assert again.step_count == 8


def test_temperature_top_k_top_p_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    torch.testing.assert_close(_filtered_probs(logits, 1.0, None, None), torch.exp(logits))
    sharp = torch.tensor([0.25, 0.09, 0.0225, 0.0025], dtype=torch.float64)
    torch.testing.assert_close(_filtered_probs(logits, 0.5, None, None)[0], sharp / sharp.sum())
    torch.testing.assert_close(_filtered_probs(logits, 1.0, 2, None)[0],
                               torch.tensor([0.625, 0.375, 0, 0], dtype=torch.float64))
    # nucleus 0.75: the smallest prefix with mass >= 0.75 is {0.5, 0.3}
    torch.testing.assert_close(_filtered_probs(logits, 1.0, None, 0.75)[0],
                               torch.tensor([0.5, 0.3, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(_filtered_probs(logits, 0.0, None, None)[0],
                               torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
