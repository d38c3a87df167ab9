"""``hf-lm``: fine-tunes a local pretrained causal LM with Hugging Face ``transformers`` (optional extra ``hf``).

Shumailov et al. (Nature 2024) fine-tune OPT-125m on wikitext-2 generation after generation, each
generation's training set written by the previous model in *prompted continuation*: the model gets
the first tokens of a training document and writes the rest (they use 5-way beam search; sampling is
the other arm). This generator is that protocol on madlab's loop:

* **Model.** ``model_path`` is a local folder written by ``save_pretrained`` (``config.json`` and the
  weights; nothing is ever downloaded: ``local_files_only``). Every generation starts from that
  pretrained checkpoint (Shumailov's protocol, MAD's retrain-from-scratch default); ``loop.warm_start``
  continues from the previous generation's weights instead. AdamW for ``steps`` minibatches, a fresh
  optimizer per generation (ordinary fine-tuning).
* **Tokenizer.** Token ids must be the model's: the dataset must use ``tokenizer: pretrained`` with
  ``tokenizer_path`` pointing at a folder whose ``tokenizer.json`` is byte for byte the model folder's
  (normally the model folder itself). ``madlab validate`` refuses anything else with one line
  (``check_dataset``), since ids of another vocabulary would be silently wrong. Ids the tokenizer does
  not have but the model's (padded) embedding does are never generated.
* **Documents.** A row is fed as ``[BOS, t_1 .. t_n, EOS]`` (EOS only when the document ended before
  the context; BOS = the model's ``bos_token_id``, else its EOS), so the model's positions must hold
  ``max_tokens + 2``: a smaller model is refused at validate time.
* **Prompts.** ``fit`` keeps the first ``prompt_tokens`` tokens of every training document (in the
  state, so a reloaded model samples the same); ``sample(n)`` continues them in a seeded order (cycling
  when n exceeds them), and a sample is prompt + continuation, cut to ``max_tokens``. Because a
  sample starts with its prompt, prompts stay the real documents' beginnings generation after
  generation even when training is fully synthetic, as in the paper.
* **Decoding and λ.** ``decoding: sample``: ancestral sampling at temperature λ (λ = 0 greedy), then
  optional ``top_k`` / ``top_p``; ``decoding: beam``: beam search with ``num_beams`` beams
  (deterministic given the prompt, so λ has no effect there). ``repetition_penalty`` (CTRL's, 1 = none)
  applies to both. Randomness (dropout, sampling) comes from the global torch RNG, forked and seeded
  per call, so a seed fixes the model and the samples on CPU.
* ``log_likelihood`` gives the ``perplexity`` metric; ``train_loss`` is a model metric.

Why ``transformers`` and not madlab's own transformer: the point of this generator is *pretrained*
models (OPT, GPT-2, Pythia, ...), whose architectures and checkpoints only ``transformers`` reads.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from madlab.core.errors import ConfigError, RunFailed
from madlab.core.samples import Samples
from madlab.core.tokenizer import PAD, PretrainedTokenizer, lengths
from madlab.plugins.generator import Generator, Params
from madlab.plugins.torch import endless_batches, resolve_device, seeded, token_log_likelihood, torch_generator


def _transformers():
    try:
        import transformers  # optional dependency (the hf extra)
    except ImportError:
        raise ConfigError("generator.name: hf-lm needs Hugging Face transformers, the optional extra hf: "
                          "pip install 'madlab[hf]'") from None
    return transformers


@contextmanager
def quiet_weight_loading():
    """Silence transformers' "Loading weights" progress bar for one ``from_pretrained`` call, then put
    every progress-bar switch back as it was.

    transformers 5.x draws that bar with its own ``transformers.utils.logging.tqdm``, gated by
    ``disable_progress_bar()`` / ``enable_progress_bar()``; ``from_pretrained``'s only bar argument
    (``tqdm_class``) is for downloads, which ``local_files_only`` never makes. Those two functions
    also switch huggingface_hub's bars, so both switches are read first and each is restored on exit:
    a user who turned either off (or on) finds it so afterwards. (The switches are process-global:
    another thread loading a model at the same moment would load quietly too.)
    """
    from huggingface_hub import utils as hub  # optional dependency (the hf extra)
    from transformers.utils import logging as hf_logging  # optional dependency (the hf extra)

    bars_were_on, hub_was_off = hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
        if hub.are_progress_bars_disabled() != hub_was_off:
            (hub.disable_progress_bars if hub_was_off else hub.enable_progress_bars)()


def _model_folder(model_path: str) -> Path:
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"generator.model_path: {path} is not a folder (a local model saved with save_pretrained)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"generator.model_path: {path} has no config.json (not a save_pretrained model folder)")
    return path


def model_config(model_path: str):
    """The model's ``transformers`` config, read from the local folder (cheap: no weights)."""
    path = _model_folder(model_path)
    try:
        return _transformers().AutoConfig.from_pretrained(str(path), local_files_only=True)
    except ConfigError:
        raise
    except Exception as exc:  # transformers raises ValueError/OSError/KeyError for unknown or broken configs
        raise ConfigError(f"generator.model_path: {path}/config.json cannot be read by transformers "
                          f"({str(exc).splitlines()[0][:160]})") from None


def _positions(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _special_ids(config) -> tuple[int, int]:
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    if eos is None:
        raise ConfigError("generator.model_path: the model config has no eos_token_id (documents need an end marker)")
    bos = config.bos_token_id if config.bos_token_id is not None else eos
    return int(bos), int(eos)


class HFLMGenerator(Generator):
    """A local pretrained causal LM fine-tuned with transformers (Shumailov's prompted continuation); λ = temperature.

    See the module docstring: ``model_path`` (required, a local folder), the dataset's tokenizer must be
    the model's (``tokenizer: pretrained``), prompts of ``prompt_tokens`` real tokens, ``decoding``
    ``sample`` (temperature λ, top-k/top-p) or ``beam`` (``num_beams``), ``repetition_penalty``.
    """

    name = "hf-lm"
    data_kinds = frozenset({"tokens"})
    model_metric_names = frozenset({"train_loss"})

    class Params(Params):
        model_path: str = Field(description="local folder of a pretrained causal LM (save_pretrained)")
        steps: int = Field(100, ge=0, description="fine-tuning minibatches per generation")
        batch_size: int = Field(8, ge=1)
        lr: float = Field(5e-5, gt=0.0)
        weight_decay: float = Field(0.0, ge=0.0)
        grad_clip: float = Field(1.0, gt=0.0)
        prompt_tokens: int = Field(16, ge=0, description="real tokens of each prompt (Shumailov: the document's start)")
        decoding: Literal["sample", "beam"] = "sample"
        num_beams: int = Field(5, ge=1, description="beams of decoding: beam (Shumailov used 5)")
        repetition_penalty: float = Field(1.0, gt=0.0, description="CTRL's repetition penalty (1 = none)")
        top_k: int | None = Field(None, ge=1)
        top_p: float | None = Field(None, gt=0.0, le=1.0)
        sample_batch: int = Field(32, ge=1, description="prompts continued per generate() call")

    def __init__(self, params, *, data_shape, num_classes=None, device="cpu", vocab_size: int | None = None):
        super().__init__(params, data_shape=data_shape, num_classes=num_classes, device=device)
        if vocab_size is None:
            raise ConfigError("generator.name: 'hf-lm' needs token data (a vocab_size)")
        self.check(params, data_shape=data_shape, num_classes=num_classes)
        self.p = params
        self.vocab_size = int(vocab_size)
        self.max_tokens = int(data_shape[0])
        self.torch_device = resolve_device(device)
        config = model_config(params.model_path)
        if self.vocab_size > config.vocab_size:
            raise ConfigError(f"dataset.tokenizer: {self.vocab_size} token ids, more than the model's {config.vocab_size} "
                              f"(generator.model_path); use the model's own tokenizer")
        self.bos, self.eos = _special_ids(config)
        self.model_vocab = int(config.vocab_size)
        self.model = None
        self.prompts = None

    # ------------------------------------------------------------------ the validation hook
    @classmethod
    def check(cls, params, *, data_shape, num_classes=None):
        if len(tuple(data_shape)) != 1:
            raise ConfigError(f"generator.name: hf-lm needs token data, got samples of shape {tuple(data_shape)}")
        max_tokens = int(data_shape[0])
        config = model_config(params.model_path)
        _special_ids(config)
        positions = _positions(config)
        if positions is not None and positions < max_tokens + 2:
            raise ConfigError(f"dataset.max_tokens: {max_tokens} tokens plus the begin and end markers need {max_tokens + 2} "
                              f"positions, the model at generator.model_path has {positions}")
        if params.prompt_tokens >= max_tokens:
            raise ConfigError(f"generator.prompt_tokens: {params.prompt_tokens} leaves nothing to continue in a "
                              f"context of {max_tokens} tokens")

    @classmethod
    def check_dataset(cls, params, dataset) -> None:
        """The run's tokenizer must be the model's (byte-identical tokenizer.json), or ids mean other tokens."""
        folder = _model_folder(params.model_path)
        model_file = folder / PretrainedTokenizer.FILE
        tokenizer = dataset.tokenizer
        if not model_file.is_file():
            raise ConfigError(f"generator.model_path: {folder} has no {PretrainedTokenizer.FILE} (hf-lm needs the "
                              f"model's fast tokenizer, saved with it)")
        if tokenizer.kind != "pretrained":
            raise ConfigError(f"dataset.tokenizer: hf-lm needs the model's own tokenizer, not {tokenizer.kind!r}: set "
                              f"dataset.tokenizer: pretrained and dataset.tokenizer_path: {folder}")
        if tokenizer.to_json() != PretrainedTokenizer.from_folder(folder).to_json():
            raise ConfigError(f"dataset.tokenizer_path: its tokenizer.json differs from the model's ({model_file}): "
                              f"token ids would mean other tokens; point it at the model folder")

    # ------------------------------------------------------------------ model
    def _ensure_model(self) -> None:
        if self.model is not None:
            return
        transformers = _transformers()
        try:
            with quiet_weight_loading():
                self.model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(_model_folder(self.p.model_path)), local_files_only=True).float()
        except ConfigError:
            raise
        except Exception as exc:
            raise RunFailed(f"hf-lm: cannot load the model at {self.p.model_path} "
                            f"({str(exc).splitlines()[0][:200]})") from None
        self.model.to(self.torch_device)
        self.tied = _tied_keys(self.model)

    def _sequences(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input ids, attention mask, labels) for rows: [BOS, tokens, EOS if the document ended], right-padded."""
        x = np.asarray(x, dtype=np.int64)
        n, width = x.shape
        ln = torch.as_tensor(lengths(x))
        ids = torch.full((n, width + 2), self.eos, dtype=torch.int64)
        ids[:, 0] = self.bos
        ids[:, 1:width + 1] = torch.as_tensor(np.where(x == PAD, self.eos, x))
        keep = torch.arange(width + 2)[None, :] <= (ln + (ln < width).long())[:, None]  # BOS, tokens, EOS
        labels = torch.where(keep, ids, torch.full_like(ids, -100))
        return ids, keep.long(), labels

    # ------------------------------------------------------------------ protocol
    def fit(self, data: Samples, *, seed: int) -> None:
        self._ensure_model()
        p, dev = self.p, self.torch_device
        x = np.asarray(data.x, dtype=np.int64)
        ids, mask, labels = self._sequences(x)
        self.last_loss = float("nan")
        with seeded(seed, dev):  # dropout draws from the global RNG
            self.model.train()
            optimizer = torch.optim.AdamW(self.model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            batches = endless_batches(len(ids), p.batch_size, torch_generator(seed))
            for step in range(p.steps):
                idx = next(batches)
                width = int(mask[idx].sum(1).max())  # trim the batch's common padding
                out = self.model(input_ids=ids[idx, :width].to(dev), attention_mask=mask[idx, :width].to(dev),
                                 labels=labels[idx, :width].to(dev))
                if not torch.isfinite(out.loss):
                    raise RunFailed(f"hf-lm: non-finite training loss at step {step}")
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
                optimizer.step()
                self.last_loss = float(out.loss.detach())
        self.model.eval()
        k = min(p.prompt_tokens, x.shape[1])
        self.prompts = x[:, :k].copy()

    @torch.no_grad()
    def log_likelihood(self, x: np.ndarray, batch: int = 32) -> tuple[float, int]:
        """(Σ log p of every token and end marker of the rows after BOS, how many were counted)."""
        self._require()
        ids, mask, labels = self._sequences(x)
        total, count = 0.0, 0
        for start in range(0, len(ids), batch):
            sl = slice(start, start + batch)
            width = int(mask[sl].sum(1).max())
            logits = self.model(input_ids=ids[sl, :width].to(self.torch_device),
                                attention_mask=mask[sl, :width].to(self.torch_device)).logits.float().cpu()
            part, n = token_log_likelihood(torch.log_softmax(logits[:, :-1], -1), labels[sl, 1:width])
            total, count = total + part, count + n
        return total, count

    @torch.no_grad()
    def sample(self, n: int, *, bias: float, seed: int) -> Samples:
        self._require()
        transformers = _transformers()
        p, dev = self.p, self.torch_device
        m = len(self.prompts)
        gen = torch_generator(seed)
        order = torch.cat([torch.randperm(m, generator=gen) for _ in range(-(-n // m))])[:n].numpy()
        prompts = [row[row != PAD] for row in self.prompts[order]]
        sampling = p.decoding == "sample" and bias > 0
        config = transformers.GenerationConfig(
            do_sample=sampling, temperature=float(bias) if sampling else None,
            top_k=(p.top_k or 0) if sampling else None, top_p=(p.top_p or 1.0) if sampling else None,
            num_beams=p.num_beams if p.decoding == "beam" else 1, repetition_penalty=p.repetition_penalty,
            bos_token_id=self.bos, eos_token_id=self.eos, pad_token_id=self.eos,
            suppress_tokens=[i for i in range(self.vocab_size, self.model_vocab) if i != self.eos] or None)
        out = np.full((n, self.max_tokens), PAD, dtype=np.int64)
        by_length: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(i)
        with seeded(seed, dev):
            for k in sorted(by_length):  # equal-length prompts batch without padding
                rows = by_length[k]
                config.max_new_tokens = self.max_tokens - k
                for start in range(0, len(rows), p.sample_batch):
                    chunk = rows[start:start + p.sample_batch]
                    inputs = torch.tensor([[self.bos, *prompts[i].tolist()] for i in chunk], dtype=torch.int64)
                    result = self.model.generate(inputs.to(dev), attention_mask=torch.ones_like(inputs).to(dev),
                                                 generation_config=config)
                    for i, row in zip(chunk, result[:, k + 1:].cpu().numpy()):
                        cont = row[:np.argmax(row == self.eos)] if (row == self.eos).any() else row
                        doc = np.concatenate([prompts[i], cont])[:self.max_tokens]
                        out[i, :len(doc)] = doc
        return Samples(out)

    def _require(self) -> None:
        if self.model is None or self.prompts is None:
            raise RuntimeError("hf-lm: fit or load a state first")

    def state_dict(self):
        self._require()
        state = {f"model.{k}": v.detach().cpu() for k, v in self.model.state_dict().items() if k not in self.tied}
        state["prompts"] = torch.as_tensor(self.prompts)
        return state

    def load_state_dict(self, state):
        self._ensure_model()
        weights = {k[len("model."):]: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
                   for k, v in state.items() if k.startswith("model.")}
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - self.tied:
            raise ConfigError(f"hf-lm: the checkpoint does not fit the model at {self.p.model_path} "
                              f"(missing {sorted(set(missing) - self.tied)[:3]}, unexpected {unexpected[:3]})")
        self.model.tie_weights()
        self.model.eval()
        self.prompts = np.asarray(state["prompts"], dtype=np.int64)

    def model_metrics(self, dataset) -> dict[str, float]:
        return {"train_loss": self.last_loss} if hasattr(self, "last_loss") else {}


def _tied_keys(model) -> set[str]:
    """State keys whose tensor shares memory with an earlier key (tied embeddings): not saved twice
    (safetensors refuses shared tensors), restored by ``tie_weights`` on load."""
    seen, tied = set(), set()
    for key, value in model.state_dict().items():
        ptr = (value.data_ptr(), value.shape)
        if ptr in seen:
            tied.add(key)
        seen.add(ptr)
    return tied
