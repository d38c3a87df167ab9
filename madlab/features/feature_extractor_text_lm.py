"""``text-lm``: a small causal transformer LM trained by madlab on a text dataset's real corpus, whose
mean-pooled hidden states are the document features of the ``tokens`` kind's feature-space metrics.

The image kind scores FID, KID, precision/recall, density/coverage and Vendi on the features of a
pinned LeNet (:mod:`madlab.features.feature_extractor_lenet`). No pretrained text encoder can be
downloaded here, and none would know the corpus's tokenizer (characters, a locally trained BPE, the
symbols of a synthetic source), so madlab trains one reference encoder **per corpus**, once per cache,
exactly as it trains LeNet once.

*Why this design.* A causal transformer (2 pre-LN layers, width 64, 4 heads, context 128) trained on
next-token prediction is the smallest model whose features see what text collapse changes: word
choice (the token embeddings) *and* order and context (attention over the prefix). A bag-of-n-grams
encoder would be cheaper but blind beyond its n: documents whose tokens were shuffled would score
close to real ones, and a self-supervised next-token objective needs no labels, which text corpora do
not have. A document's feature is the mean over its positions (the begin marker and each token) of
the final layer-normalised hidden state, plus one coordinate: the document's mean surprisal (next-token
negative log-likelihood, nats per token, its end marker included) under the encoder. That coordinate
is there because mean pooling alone is nearly blind to order at this model size: with it, shuffled
text is far from real text in FID, without it barely (benchmarks/README.md, *Reference networks*). It is the
reference-model likelihood that text-GAN work calls "generative perplexity", here as one feature
axis among 65. Documents longer than the encoder's context are read up to it.

The model is written here (torch's own ``nn.TransformerEncoderLayer`` with a causal mask) rather than borrowed from the ``gpt`` generator,
so a change to a generator can never change the reference features.

*Training cost and determinism.* A fixed number of steps (300 minibatches of 32 documents, seeded
epochs over the training pool): the cost does not grow with the corpus (its measurement:
benchmarks/README.md, *Reference networks*; every record keeps its own ``train_seconds``). Training
runs in a child process with the same pinned numerical kernels as LeNet's
(:data:`~madlab.core.pinned.PINNED_ENV`: one thread, ATen AVX2, MKL's fixed
``AVX2`` branch, oneDNN off) and ``torch.use_deterministic_algorithms``, all randomness from seeded
generators, so the weights' bytes are a function of (corpus tokens, tokenizer, recipe, version, torch
build) only: not of the caller's thread count or what it did before.

*Cache key and identity.* Weights live in ``$MADLAB_CACHE/extractors/text-lm-v<VERSION>-<key>``
(``.safetensors`` + ``.json`` record), ``key`` = SHA-256 of the version, recipe, tokenizer JSON and
the corpus's token bytes: one encoder per corpus and tokenizer, trained under a file lock so Ray
workers on a cold cache wait for the first instead of training their own. The evaluator records
``extractor: text-lm`` and ``extractor_hash`` (first 16 hex digits of the weights file's SHA-256)
in every row's metadata, so numbers from different encoders are never mixed in a table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import load_file, save

from madlab.core.errors import MadlabError
from madlab.core.files import atomic_write_bytes, cache_root
from madlab.core.pinned import LOCK_TIMEOUT_S, PINNED_ENV, file_sha256
from madlab.core.tokenizer import Tokenizer

NAME = "text-lm"
#: Bump when the architecture or the training recipe changes: old cache files are then ignored.
VERSION = 1
RECIPE = dict(seed=0, steps=300, batch_size=32, lr=3e-3, weight_decay=0.01, warmup=20,
              d_model=64, n_layer=2, n_head=4, context=128)
#: Recipe keys a caller may change (tests shrink the model and the steps); the key hashes them.
TUNABLE = set(RECIPE)
#: Pad / beyond-the-end positions of the encoder's input (a document's own ids are below vocab_size).
PAD = -1


class TextLM(nn.Module):
    """Token + position embeddings, pre-LN causal transformer layers, final LayerNorm, LM head.

    Input ids: ``vocab`` is the begin marker, ``vocab + 1`` fills positions after a document's end;
    the head predicts a document's tokens and, after its last one, the end id ``vocab``.
    """

    def __init__(self, vocab_size: int, context: int, d_model: int, n_layer: int, n_head: int):
        super().__init__()
        self.vocab_size, self.context = vocab_size, context
        self.tok = nn.Embedding(vocab_size + 2, d_model)
        self.pos = nn.Embedding(context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_head, 4 * d_model, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size + 1)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        t = inputs.shape[1]
        x = self.tok(inputs) + self.pos(torch.arange(t, device=inputs.device))
        return self.ln(self.layers(x, mask=self.mask[:t, :t], is_causal=True))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(inputs))


def model_inputs(x: np.ndarray, vocab_size: int, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, valid) for padded token rows: inputs ``[BOS, t_1 .. t_{c-1}]`` (c = context),
    targets ``[t_1 .. t_c]`` with the end id after a document that ended, ``valid`` marks the positions
    that belong to the document (its begin marker and tokens): the ones pooled and trained on."""
    x = torch.as_tensor(np.asarray(x, dtype=np.int64))
    n, length = x.shape
    c = min(context, length + 1)
    n_tok = (x != PAD).sum(1)
    body = torch.full((n, c), vocab_size + 1, dtype=torch.int64)
    body[:, 0] = vocab_size
    take = min(c - 1, length)
    body[:, 1:1 + take] = torch.where(x[:, :take] == PAD, vocab_size + 1, x[:, :take])
    targets = torch.full((n, c), -100, dtype=torch.int64)
    take_t = min(c, length)
    targets[:, :take_t] = torch.where(x[:, :take_t] == PAD, -100, x[:, :take_t])
    # the end target: a document that ended (padding follows it; a full row was cut) inside the window
    ends = torch.nonzero((n_tok < length) & (n_tok < c)).flatten()
    targets[ends, n_tok[ends]] = vocab_size
    valid = torch.arange(c)[None, :] <= torch.minimum(n_tok, torch.tensor(c - 1))[:, None]
    return body, targets, valid


def train_text_lm(tokens: np.ndarray, vocab_size: int, recipe: dict) -> TextLM:
    """Train the encoder on padded token rows; deterministic under the recipe's seed at a fixed thread count."""
    torch.manual_seed(recipe["seed"])
    gen = torch.Generator().manual_seed(recipe["seed"])
    model = TextLM(vocab_size, recipe["context"], recipe["d_model"], recipe["n_layer"], recipe["n_head"])
    inputs, targets, _ = model_inputs(tokens, vocab_size, recipe["context"])
    n, bs = len(inputs), min(recipe["batch_size"], len(inputs))
    steps = recipe["steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    warm = max(1, min(recipe["warmup"], steps // 5))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    model.train()
    order, at = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if at + bs > n:
            order, at = torch.randperm(n, generator=gen), 0
        idx = order[at:at + bs]
        at += bs
        logits = model(inputs[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[idx].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    return model


@torch.no_grad()
def mean_nll(model: TextLM, tokens: np.ndarray, batch_size: int = 256) -> float:
    """Mean next-token negative log-likelihood (nats) of the encoder on padded rows (its record's fit)."""
    total, count = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        inputs, targets, _ = model_inputs(tokens[i:i + batch_size], model.vocab_size, model.context)
        logits = model(inputs)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       ignore_index=-100, reduction="sum"))
        count += int((targets != -100).sum())
    return total / max(count, 1)


# ------------------------------------------------------------------------------ the cache


def weights_dir() -> Path:
    return cache_root() / "extractors"


def resolve_recipe(overrides: dict | None) -> dict:
    overrides = dict(overrides or {})
    unknown = set(overrides) - TUNABLE
    if unknown:
        raise MadlabError(f"{NAME}: unknown recipe key(s) {sorted(unknown)} (tunable: {sorted(TUNABLE)})")
    return {**RECIPE, **overrides}


def corpus_key(tokens: np.ndarray, tokenizer_json: str, recipe: dict) -> str:
    """What the encoder's weights are a function of: version, recipe, tokenizer and the corpus tokens."""
    tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
    h = hashlib.sha256()
    h.update(json.dumps({"name": NAME, "version": VERSION, "recipe": recipe}, sort_keys=True).encode())
    h.update(tokenizer_json.encode())
    h.update(repr(tokens.shape).encode())
    h.update(tokens.tobytes())
    return h.hexdigest()[:16]


def encoder_path(tokens: np.ndarray, tokenizer, *, directory=None, recipe: dict | None = None) -> Path:
    """Where the encoder of this corpus is (or will be) cached."""
    recipe = resolve_recipe(recipe)
    directory = Path(directory) if directory is not None else weights_dir()
    return directory / f"{NAME}-v{VERSION}-{corpus_key(tokens, tokenizer.to_json(), recipe)}.safetensors"


def ensure_text_lm(tokens: np.ndarray, tokenizer, *, directory=None, recipe: dict | None = None,
                   verbose: bool = False) -> Path:
    """Path of the cached encoder of this corpus, training and recording it on first use.

    ``tokens``: the corpus the encoder learns (a dataset's training pool, padded int64 rows);
    ``tokenizer``: the run's :class:`madlab.core.tokenizer.Tokenizer`. The first caller takes the lock and
    trains in a pinned child process; concurrent callers block on the lock, then read its file.
    """
    recipe = resolve_recipe(recipe)
    weights = encoder_path(tokens, tokenizer, directory=directory, recipe=recipe)
    record = weights.with_suffix(".json")
    if weights.is_file() and record.is_file():
        return weights
    weights.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(weights.with_suffix(".lock")), timeout=LOCK_TIMEOUT_S):
            if not (weights.is_file() and record.is_file()):
                if verbose:
                    print(f"madlab: training the {NAME} text encoder on {len(tokens)} documents (once per "
                          f"corpus and cache) ...", flush=True)
                _train_pinned(weights, np.asarray(tokens, dtype=np.int64), tokenizer, recipe)
    except Timeout:
        raise MadlabError(f"{NAME}: waited {LOCK_TIMEOUT_S} s for another process training the text encoder "
                          f"(lock {weights.with_suffix('.lock')})") from None
    return weights


def _train_pinned(weights: Path, tokens: np.ndarray, tokenizer, recipe: dict) -> None:
    """Train in a child process started with the pinned kernel environment (module docstring)."""
    with tempfile.TemporaryDirectory(dir=weights.parent, prefix=".text-lm-") as tmp:
        corpus = Path(tmp) / "corpus.npy"
        np.save(corpus, tokens, allow_pickle=False)
        (Path(tmp) / "tokenizer.json").write_text(tokenizer.to_json())
        cmd = [sys.executable, "-m", "madlab.features.feature_extractor_text_lm", str(weights), tmp,
               "--recipe", json.dumps(recipe)]
        done = subprocess.run(cmd, env={**os.environ, **PINNED_ENV}, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise MadlabError(f"{NAME}: training the text encoder failed: {tail[0]}")


def _train_and_record(weights: Path, folder: Path, recipe: dict) -> None:
    """The child's work: train, then publish weights and record atomically (record last)."""
    torch.backends.mkldnn.enabled = False
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    tokens = np.load(folder / "corpus.npy", allow_pickle=False)
    tokenizer_json = (folder / "tokenizer.json").read_text()
    vocab_size = Tokenizer.from_json(tokenizer_json).vocab_size
    start = time.perf_counter()
    model = train_text_lm(tokens, vocab_size, recipe)
    seconds = time.perf_counter() - start
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = {"vocab_size": vocab_size, **{k: recipe[k] for k in ("context", "d_model", "n_layer", "n_head")}}
    # one metadata key: safetensors writes a multi-key metadata map in an arbitrary order, which
    # would change the file's bytes (and hash) from one training to the next
    header = json.dumps({"name": NAME, "version": VERSION, "config": config}, sort_keys=True)
    atomic_write_bytes(weights, save(state, metadata={NAME: header}))
    record = {"name": NAME, "version": VERSION, "sha256": file_sha256(weights), "recipe": recipe,
              "config": config, "corpus_documents": int(len(tokens)),
              "corpus_tokens": int((tokens != PAD).sum()), "train_nll": round(mean_nll(model, tokens), 4),
              "train_seconds": round(seconds, 1), "torch": torch.__version__,
              "pinned_env": {k: os.environ.get(k) for k in PINNED_ENV},
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    atomic_write_bytes(weights.with_suffix(".json"), json.dumps(record, indent=2).encode())


# ------------------------------------------------------------------------------ features


class TextEncoder:
    """The loaded, frozen encoder: ``features(x)`` -> float32 (n, d_model) per padded token row."""

    def __init__(self, weights_path, device: str = "cpu"):
        path = Path(weights_path)
        try:
            with safe_open(str(path), "pt") as f:
                config = json.loads(f.metadata()[NAME])["config"]
            self.model = TextLM(**config)
            self.model.load_state_dict(load_file(str(path)))
        except Exception as e:  # safetensors / json / load_state_dict raise several types for a bad file
            raise MadlabError(f"{NAME}: {path} is not a {NAME} weights file ({e})") from None
        self.model.requires_grad_(False)
        self.model.eval().to(device)
        self.device = device
        self.weights_path = path
        self.vocab_size = config["vocab_size"]
        self.identity = {"extractor": NAME, "extractor_hash": file_sha256(path)[:16], "feature_layer": "mean-pooled"}

    def features(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(n, d_model + 1): the mean-pooled final hidden state, then the mean surprisal (module docstring)."""
        return self.score(x, batch_size)[0]

    @torch.no_grad()
    def score(self, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, float, int]:
        """(features, summed next-token NLL in nats, tokens scored): one pass gives the features and the
        reference LM's likelihood of the rows (each scored on its first ``context`` positions and its end)."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise MadlabError(f"{NAME}: expects padded token rows (n, L), got shape {x.shape}")
        out, total, count = [], 0.0, 0
        for i in range(0, len(x), batch_size):
            inputs, targets, valid = model_inputs(x[i:i + batch_size], self.vocab_size, self.model.context)
            h = self.model.hidden(inputs.to(self.device)).float()
            nll = F.cross_entropy(self.model.head(h).transpose(1, 2), targets.to(self.device), ignore_index=-100,
                                  reduction="none").cpu()
            h = h.cpu()
            w = valid.float().unsqueeze(-1)
            scored = (targets != -100).float()
            surprisal = (nll * scored).sum(1) / scored.sum(1).clamp(min=1.0)
            out.append(torch.cat([(h * w).sum(1) / w.sum(1), surprisal[:, None]], 1))
            total += float((nll.double() * scored.double()).sum())
            count += int(scored.sum())
        if not out:
            raise ValueError("no documents to extract features from")
        return torch.cat(out).numpy(), total, count


__all__ = ["NAME", "RECIPE", "TextEncoder", "TextLM", "encoder_path", "ensure_text_lm", "train_text_lm"]


if __name__ == "__main__":  # the pinned training child started by _train_pinned
    parser = argparse.ArgumentParser(description=f"train the {NAME} encoder (run by ensure_text_lm)")
    parser.add_argument("weights")
    parser.add_argument("folder")
    parser.add_argument("--recipe", required=True)
    args = parser.parse_args()
    _train_and_record(Path(args.weights), Path(args.folder), json.loads(args.recipe))
