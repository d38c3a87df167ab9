"""A small causal transformer language model trained from scratch (nanoGPT-style, readable in one file).

Why hand-written rather than ``transformers``' GPT-2: the model is ~80 lines, and owning it gives a
batched KV-cache sampler whose randomness comes from a CPU ``torch.Generator`` (the same samples on
CPU and GPU for a seed, madlab's determinism rule), exact log-likelihoods for perplexity, and flat
state dicts; ``hf-lm`` (optional) is the place for pretrained Hugging Face models.

Data: a row of the ``tokens`` kind (ids then padding) becomes the input ``[BOS, t_1 .. t_L]`` with
targets ``[t_1 .. t_L, EOS]``, where BOS = EOS = ``vocab_size`` (the boundary id) and no end target
is counted for a row that filled the context (it was cut). So ``block_size`` must be at least
``max_tokens + 1``; ``madlab validate`` refuses a smaller one.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from madlab.core.errors import ConfigError, RunFailed
from madlab.core.samples import Samples
from madlab.core.tokenizer import PAD
from madlab.plugins.generator import Generator
from madlab.plugins.torch import (EMA, NeuralParams, autocast, endless_batches, load_module_state, load_optimizer_state,
                                  maybe_compile, module_state, optimizer_state, resolve_and_place, seeded,
                                  token_log_likelihood, torch_generator)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout

    def forward(self, x, cache=None, pos: int = 0):
        """Full causal attention (``cache`` None), or one new position appended to ``cache`` = (k, v)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            cache_k, cache_v = cache
            cache_k[:, :, pos:pos + t] = k
            cache_v[:, :, pos:pos + t] = v
            y = F.scaled_dot_product_attention(q, cache_k[:, :, :pos + t], cache_v[:, :, :pos + t],
                                               is_causal=t > 1)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd),
                                 nn.Dropout(dropout))

    def forward(self, x, cache=None, pos: int = 0):
        x = x + self.attn(self.ln1(x), cache, pos)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token + position embeddings, pre-LN transformer blocks, a head tied to the token embedding."""

    def __init__(self, vocab: int, block_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, caches=None, pos: int = 0):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(pos, pos + t, device=idx.device))
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i], pos)
        return self.head(self.ln(x))


class GPTGenerator(Generator):
    """Causal transformer LM trained from scratch (nanoGPT-sized at ``cpu``); λ = sampling temperature.

    Sampling bias λ = temperature (logits / λ; λ = 0 greedy), then optional ``top_k`` / ``top_p``
    (nucleus) truncation. Batched ancestral sampling with a key/value cache, ``sample_batch`` rows at
    a time. AdamW with linear warm-up and cosine decay, gradient clipping, optional EMA of the
    weights (sampled and scored when on); bf16 autocast and ``torch.compile`` on GPU only. Warm
    start continues from the loaded weights and optimizer moments for ``steps`` more steps.
    ``log_likelihood`` gives the ``perplexity`` metric (of the EMA weights when on, at λ = 1).
    """

    name = "gpt"
    data_kinds = frozenset({"tokens"})
    model_metric_names = frozenset({"train_loss"})

    class Params(NeuralParams):
        n_layer: int | None = Field(None, ge=1, le=96)
        n_head: int | None = Field(None, ge=1, le=64)
        n_embd: int | None = Field(None, ge=8, le=8192)
        block_size: int | None = Field(None, ge=2, description="positions; default max_tokens + 1")
        dropout: float = Field(0.0, ge=0.0, lt=1.0)
        steps: int | None = Field(None, ge=1)
        batch_size: int | None = Field(None, ge=1)
        lr: float | None = Field(None, gt=0.0)
        weight_decay: float = Field(0.1, ge=0.0)
        warmup: int | None = Field(None, ge=0)
        grad_clip: float = Field(1.0, gt=0.0)
        ema: float | None = Field(None, gt=0.0, lt=1.0)
        top_k: int | None = Field(None, ge=1)
        top_p: float | None = Field(None, gt=0.0, le=1.0)
        sample_batch: int = Field(512, ge=1)

        PRESETS: ClassVar = {
            "cpu": {"tokens": {"n_layer": 2, "n_head": 4, "n_embd": 64, "steps": 400, "batch_size": 16,
                               "lr": 3e-3, "warmup": 40}},
            "gpu": {"tokens": {"n_layer": 6, "n_head": 6, "n_embd": 384, "steps": 5000, "batch_size": 64,
                               "lr": 1e-3, "warmup": 200}},
            "paper": {"tokens": {"n_layer": 12, "n_head": 12, "n_embd": 768, "steps": 20000, "batch_size": 64,
                                 "lr": 6e-4, "warmup": 1000}},
        }

    def __init__(self, params, *, data_shape, num_classes=None, device="cpu", vocab_size: int | None = None):
        super().__init__(params, data_shape=data_shape, num_classes=num_classes, device=device)
        if vocab_size is None:
            raise ConfigError("generator.name: 'gpt' needs token data (a vocab_size)")
        self.vocab_size = int(vocab_size)
        self.max_tokens = int(data_shape[0])
        resolve_and_place(self, params, num_classes, device)

    @classmethod
    def resolve_params(cls, params, *, data_shape, num_classes=None):
        """The preset's sizes fill every unset field; ``block_size`` defaults to the context + 1."""
        p = params.resolved("tokens")
        if p.block_size is None:
            p = p.model_copy(update={"block_size": int(data_shape[0]) + 1})
        return p

    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        if len(tuple(data_shape)) != 1:
            raise ConfigError(f"generator.name: gpt needs token data, got samples of shape {tuple(data_shape)}")
        max_tokens = int(data_shape[0])
        if params.n_embd % params.n_head:
            raise ConfigError(f"generator.n_head: n_embd={params.n_embd} is not a multiple of n_head={params.n_head}")
        if params.block_size < max_tokens + 1:
            raise ConfigError(f"generator.block_size: {params.block_size} positions cannot take the data's context of "
                              f"{max_tokens} tokens plus the start token (need {max_tokens + 1})")

    # ------------------------------------------------------------------ model
    def _ensure_built(self, seed: int) -> None:
        if self.built:
            return
        p = self.p
        with seeded(seed, self.torch_device):
            self.model = GPT(self.vocab_size + 1, p.block_size, p.n_layer, p.n_head, p.n_embd, p.dropout)
        self.model.to(self.torch_device)
        decay = [q for n, q in self.model.named_parameters() if q.dim() >= 2]
        rest = [q for n, q in self.model.named_parameters() if q.dim() < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay},
                                            {"params": rest, "weight_decay": 0.0}], lr=p.lr, betas=(0.9, 0.95))
        self.ema = EMA(self.model, p.ema) if p.ema else None
        self.step_count = 0
        self.built = True

    @property
    def _scoring_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _inputs(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs [BOS, tokens] with padding as BOS, targets [tokens, EOS] with -100 where nothing is counted)."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.int64)
        n, width = x.shape
        b = self.vocab_size
        length = (x != PAD).sum(1)
        inputs = torch.cat([torch.full((n, 1), b, dtype=torch.int64), x.clamp(min=0)], 1)[:, :width + 1]
        inputs[:, 1:][x == PAD] = b
        targets = torch.cat([x, torch.full((n, 1), PAD, dtype=torch.int64)], 1)
        ended = length < width
        targets[torch.nonzero(ended).squeeze(1), length[ended]] = b
        targets[targets == PAD] = -100
        return inputs, targets

    def _lr(self, step: int) -> float:
        p = self.p
        if step < p.warmup:
            return p.lr * (step + 1) / p.warmup
        progress = (step - p.warmup) / max(1, p.steps - p.warmup)
        return p.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    # ------------------------------------------------------------------ protocol
    def fit(self, data: Samples, *, seed: int) -> None:
        self._ensure_built(seed)
        p, dev = self.p, self.torch_device
        inputs, targets = self._inputs(data.x)
        inputs, targets = inputs.to(dev), targets.to(dev)
        model = maybe_compile(self.model, dev, p.compile)
        model.train()
        batches = endless_batches(len(inputs), p.batch_size, torch_generator(seed))
        for step in range(p.steps):
            idx = next(batches).to(dev)
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr(step)
            with autocast(dev, p.amp):
                logits = model(inputs[idx])
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets[idx].flatten(), ignore_index=-100)
            if not torch.isfinite(loss):
                raise RunFailed(f"gpt: non-finite training loss at step {step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
        self.step_count += p.steps
        self.last_loss = float(loss.detach())

    @torch.no_grad()
    def log_likelihood(self, x: np.ndarray, batch: int = 256) -> tuple[float, int]:
        """(Σ log p of every token and end marker of the rows at λ = 1, how many were counted)."""
        self._require()
        model = self._scoring_model
        model.eval()
        inputs, targets = self._inputs(x)
        total, count = 0.0, 0
        for start in range(0, len(inputs), batch):
            inp = inputs[start:start + batch].to(self.torch_device)
            tgt = targets[start:start + batch].to(self.torch_device)
            part, n = token_log_likelihood(F.log_softmax(model(inp).float(), -1), tgt)
            total, count = total + part, count + n
        return total, count

    @torch.no_grad()
    def sample(self, n: int, *, bias: float, seed: int) -> Samples:
        self._require()
        generator = torch_generator(seed)
        out = np.full((n, self.max_tokens), PAD, dtype=np.int64)
        for start in range(0, n, self.p.sample_batch):
            rows = min(self.p.sample_batch, n - start)
            uniforms = torch.rand(rows, self.max_tokens, generator=generator, dtype=torch.float64)
            out[start:start + rows] = self._sample_batch(rows, bias, uniforms)
        return Samples(out)

    def _sample_batch(self, rows: int, bias: float, uniforms: torch.Tensor) -> np.ndarray:
        """Ancestral sampling with a KV cache; token j of row i is the inverse CDF at uniforms[i, j]."""
        model, p, dev, b = self._scoring_model, self.p, self.torch_device, self.vocab_size
        model.eval()
        head_dim = p.n_embd // p.n_head
        dtype = next(model.parameters()).dtype
        caches = [(torch.zeros(rows, p.n_head, self.max_tokens, head_dim, device=dev, dtype=dtype),
                   torch.zeros(rows, p.n_head, self.max_tokens, head_dim, device=dev, dtype=dtype))
                  for _ in range(p.n_layer)]
        token = torch.full((rows, 1), b, dtype=torch.int64, device=dev)
        out = torch.full((rows, self.max_tokens), PAD, dtype=torch.int64)
        alive = torch.ones(rows, dtype=torch.bool)
        for pos in range(self.max_tokens):
            logits = model(token, caches, pos)[:, -1].float().cpu().double()
            probs = _filtered_probs(logits, bias, p.top_k, p.top_p)
            cdf = probs.cumsum(-1)
            nxt = torch.searchsorted(cdf, (uniforms[:, pos] * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
            nxt = nxt.clamp(max=b)
            alive &= nxt != b
            out[alive, pos] = nxt[alive]
            if not alive.any():
                break
            token = nxt.clamp(max=b).unsqueeze(1).to(dev)
        return out.numpy()

    def _require(self) -> None:
        if not self.built:
            raise RuntimeError("gpt: fit or load a state first")

    def state_dict(self):
        self._require()
        state = {**module_state("model", self.model), **optimizer_state("optimizer", self.optimizer),
                 "step_count": torch.tensor([self.step_count], dtype=torch.int64)}
        state.pop("model.head.weight", None)  # tied to model.tok.weight
        if self.ema is not None:
            state.update(module_state("ema", self.ema.averaged))
            state.pop("ema.module.head.weight", None)
        return state

    def load_state_dict(self, state):
        self._ensure_built(0)
        state = {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for k, v in state.items()}
        if "model.tok.weight" in state and state["model.tok.weight"].shape[0] != self.vocab_size + 1:
            raise ConfigError(f"gpt: checkpoint has {state['model.tok.weight'].shape[0] - 1} tokens, the data "
                              f"{self.vocab_size} (tokenizer mismatch)")
        state = dict(state)
        state["model.head.weight"] = state["model.tok.weight"]
        load_module_state("model", self.model, state)
        load_optimizer_state("optimizer", self.optimizer, state)
        if self.ema is not None and any(k.startswith("ema.") for k in state):
            ema_state = {k: v for k, v in state.items() if k.startswith("ema.")}
            ema_state.setdefault("ema.module.head.weight", state.get("ema.module.tok.weight"))
            load_module_state("ema", self.ema.averaged, ema_state)
        self.step_count = int(state["step_count"][0])

    def model_metrics(self, dataset) -> dict[str, float]:
        return {"train_loss": self.last_loss} if hasattr(self, "last_loss") else {}


def _filtered_probs(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Next-token probabilities after temperature, top-k and nucleus (top-p) truncation (rows of ``logits``)."""
    if temperature <= 0:
        probs = torch.zeros_like(logits)
        probs.scatter_(1, logits.argmax(-1, keepdim=True), 1.0)
        return probs
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, -1)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest prefix whose mass reaches top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter_(1, order, sorted_p)
    return probs
