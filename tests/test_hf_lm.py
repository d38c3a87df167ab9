"""The ``hf-lm`` generator on a tiny randomly initialised GPT-2 saved to a temporary folder (never a download)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from madlab.testing import Case, GeneratorContract, build, fitted, tiny_data  # noqa: E402

#: byte-level BPE without merges: the 256 byte symbols + the end-of-text token
VOCAB = 257
MODEL_DIR = Path(tempfile.mkdtemp(prefix="madlab-hf-lm-")) / "tiny-gpt2"


def save_tiny_model(folder: Path, n_positions: int = 64) -> Path:
    """A 1-layer GPT-2 (random weights) and its byte-level tokenizer, as save_pretrained writes them."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    assert tok.get_vocab_size() == VOCAB
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>").save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=n_positions,
                        bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    if not (MODEL_DIR / "config.json").is_file():
        save_tiny_model(MODEL_DIR)
    return MODEL_DIR


BASE = {"model_path": str(MODEL_DIR), "steps": 3, "batch_size": 8, "lr": 1e-3, "prompt_tokens": 3, "sample_batch": 8}


class TestHFLM(GeneratorContract):
    generator = "hf-lm"
    cases = [
        Case(BASE, (12,), vocab_size=VOCAB, n_train=24,
             bad=({"model_path": "/nonexistent/model"}, {"prompt_tokens": 12}, {"top_p": 1.5}, {"decoding": "greedy"})),
        Case({**BASE, "decoding": "beam", "num_beams": 3, "repetition_penalty": 1.3}, (8,), vocab_size=VOCAB, n_train=16),
        Case({**BASE, "top_k": 5, "top_p": 0.9, "prompt_tokens": 0}, (6,), vocab_size=VOCAB, n_train=16),
    ]


def test_samples_continue_their_prompts():
    """Every sample starts with the first prompt_tokens tokens of a training document (or all of a shorter one)."""
    case = Case({**BASE, "prompt_tokens": 4}, (12,), vocab_size=VOCAB, n_train=24)
    gen = fitted("hf-lm", case)
    prompts = {tuple(int(t) for t in row[:4] if t >= 0) for row in tiny_data(case).x}
    samples = gen.sample(30, bias=1.0, seed=0).x
    starts = [p for row in samples for p in prompts if tuple(int(t) for t in row[:len(p)]) == p]
    assert len(starts) >= len(samples)  # each sample matches at least one prompt
    assert all(any(tuple(int(t) for t in row[:len(p)]) == p for p in prompts) for row in samples)
    assert (samples >= 0).sum(1).max() > 4  # and the model wrote a continuation


def test_log_likelihood_is_a_direct_sum():
    """perplexity's numerator: Σ log p(token | prefix) from [BOS, tokens, EOS] by direct summation."""
    import torch

    case = Case(BASE, (10,), vocab_size=VOCAB, n_train=16)
    gen = fitted("hf-lm", case)
    x = tiny_data(case, seed=5).x[:3]
    total, count = gen.log_likelihood(x)
    expect, n = 0.0, 0
    with torch.no_grad():
        for row in x:
            toks = [int(t) for t in row if t >= 0]
            seq = [gen.bos] + toks + ([gen.eos] if len(toks) < x.shape[1] else [])
            logp = torch.log_softmax(gen.model(torch.tensor([seq])).logits[0].double(), -1)
            expect += sum(float(logp[j, seq[j + 1]]) for j in range(len(seq) - 1))
            n += len(seq) - 1
    assert count == n
    assert total == pytest.approx(expect, rel=1e-5)


def test_vocabulary_larger_than_the_model_is_refused():
    from madlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.tokenizer"):
        build("hf-lm", Case(BASE, (8,), vocab_size=VOCAB + 5))


def _corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    words = "the cat sat on a mat and the dog ran to the park while birds sang".split()
    rng = np.random.default_rng(0)
    (root / "docs.txt").write_text("\n".join(" ".join(rng.choice(words, 6)) for _ in range(80)))
    return root


def _spec(root: Path, model: Path, **dataset) -> dict:
    return {"name": "hflm", "seed": 0,
            "dataset": {"name": "text", "root": str(root), "split": "line", "max_tokens": 40, "heldout": 10,
                        "tokenizer": "pretrained", "tokenizer_path": str(model), **dataset},
            "generator": {"name": "hf-lm", "model_path": str(model), "steps": 2, "batch_size": 4, "prompt_tokens": 4},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 12, "n_synthetic": 8},
            "metrics": {"k": 3, "names": ["perplexity", "distinct_2", "train_loss"]}}


def test_loop_runs_and_decodes(tmp_path, write_spec, cli):
    code, out, err = cli("run", write_spec(_spec(_corpus(tmp_path / "c"), MODEL_DIR)), "--out", tmp_path / "o", "--no-ray")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "o" / "metrics.parquet")
    assert set(table["metric"]) == {"perplexity", "distinct_2", "train_loss"} and np.isfinite(table["value"]).all()
    from madlab.core.tokenizer import Tokenizer

    (run,) = (tmp_path / "o" / "runs").iterdir()
    tokenizer = Tokenizer.from_json((run / "tokenizer.json").read_text())
    assert tokenizer.kind == "pretrained" and tokenizer.vocab_size == VOCAB


@pytest.mark.parametrize("change, key", [
    (lambda s, t: s["generator"].update(model_path=str(t / "missing")), "generator.model_path"),
    (lambda s, t: s["dataset"].update(tokenizer="char", tokenizer_path=None), "dataset.tokenizer"),
    (lambda s, t: s["dataset"].pop("tokenizer_path"), "dataset.tokenizer_path"),
    (lambda s, t: s["dataset"].update(tokenizer_path=str(t / "other")), "dataset.tokenizer_path"),
    (lambda s, t: s["dataset"].update(max_tokens=63), "dataset.max_tokens"),
])
def test_bad_setups_are_one_line_exit_2(tmp_path, write_spec, cli, change, key):
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.json").write_text((MODEL_DIR / "tokenizer.json").read_text().replace("<|endoftext|>", "<eot>"))
    spec = _spec(_corpus(tmp_path / "c"), MODEL_DIR)
    change(spec, tmp_path)
    code, out, err = cli("validate", write_spec(spec))
    assert code == 2 and err.count("\n") == 1 and key in err, err


@pytest.mark.parametrize("bars_on", [True, False], ids=["bars-on", "bars-off"])
def test_loading_draws_no_progress_bar_and_leaves_the_switches_as_they_were(capfd, bars_on):
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    before = (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled())
    (hf_logging.enable_progress_bar if bars_on else hf_logging.disable_progress_bar)()
    try:
        state = (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled())
        capfd.readouterr()
        gen = build("hf-lm", Case(BASE, (12,), vocab_size=VOCAB, n_train=24))
        gen._ensure_model()
        out, err = capfd.readouterr()
        assert gen.model is not None and "Loading weights" not in out + err, err
        assert (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()) == state
        if bars_on:  # the switch itself works: transformers' own bar shows with it on
            for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
                pass
            assert "Loading weights" in capfd.readouterr().err
    finally:
        (hf_logging.enable_progress_bar if before[0] else hf_logging.disable_progress_bar)()
        (hub.disable_progress_bars if before[1] else hub.enable_progress_bars)()
