"""Tokenizers of the ``tokens`` data kind, and how token sequences travel in :class:`Samples`.

A text sample is one document cut to at most ``L`` tokens. A batch is ``Samples.x`` of dtype
int64 and shape ``(n, L)``: row i holds the document's token ids in ``[0, vocab_size)`` as a
contiguous prefix, followed by :data:`PAD` (-1) up to ``L``. A row without padding filled the
context and was cut there (its end is unknown); a row with padding ended where the padding
starts. No special tokens live in the vocabulary: a generator that needs beginning/end markers
adds its own ids above ``vocab_size`` (the n-gram and GPT generators use ``vocab_size`` itself).

Two tokenizers, both stored as one JSON document (``tokenizer.json`` in every run folder of a
text run, so the run folder alone decodes its samples):

* :class:`CharTokenizer` — one id per character of the corpus alphabet (the default: exact,
  no training, every string of the corpus round-trips).
* :class:`BPETokenizer` — Hugging Face ``tokenizers`` byte-level BPE trained locally on the
  training documents (a well-kept, fast implementation; byte level so decoding is lossless).
* :class:`PretrainedTokenizer` — the ``tokenizer.json`` of a local pretrained model folder (what
  ``save_pretrained`` writes for a fast tokenizer), read with ``tokenizers``: the ``hf-lm`` generator
  needs its model's own tokenizer, and its JSON goes into ``tokenizer.json`` whole, like the others.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

#: Padding id after the end of a document (never a token).
PAD = -1


def lengths(x: np.ndarray) -> np.ndarray:
    """Number of tokens in each row of a padded ``(n, L)`` batch."""
    return (np.asarray(x) != PAD).sum(axis=1).astype(np.int64)


def pad(sequences: Iterable[Iterable[int]], length: int) -> np.ndarray:
    """Token lists -> int64 ``(n, length)``, cut at ``length``, padded with :data:`PAD`."""
    rows = [list(s)[:length] for s in sequences]
    out = np.full((len(rows), length), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def unpad(x: np.ndarray) -> list[np.ndarray]:
    """A padded batch -> one int64 array of token ids per row."""
    x = np.asarray(x)
    return [row[:n] for row, n in zip(x, lengths(x))]


def check_tokens(x: np.ndarray, vocab_size: int) -> str | None:
    """Why ``x`` is not a valid padded token batch (None when it is)."""
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        return f"token batches are integer (n, L) arrays, got {x.dtype} {x.shape}"
    if ((x < PAD) | (x >= vocab_size)).any():
        return f"token ids must lie in [0, {vocab_size}) (or {PAD} for padding)"
    is_pad = x == PAD
    if (is_pad[:, :-1] & ~is_pad[:, 1:]).any():
        return "padding must only follow the tokens of a row"
    return None


class Tokenizer:
    """Text <-> token ids; ``to_json``/``from_json`` rebuild it exactly."""

    kind: str

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_json(self) -> str:
        raise NotImplementedError

    def token_strings(self) -> list[str]:
        """A printable string per id (for rank-frequency plots and excerpts)."""
        return [self.decode([i]) for i in range(self.vocab_size)]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def decode_batch(self, x: np.ndarray) -> list[str]:
        return [self.decode(row.tolist()) for row in unpad(x)]

    @staticmethod
    def from_json(text: str) -> "Tokenizer":
        data = json.loads(text)
        if data.get("kind") == "char":
            return CharTokenizer(data["alphabet"])
        if data.get("kind") == "bpe":
            return BPETokenizer(data["tokenizer"])
        if data.get("kind") == "symbols":
            return SymbolTokenizer(data["vocab_size"])
        if data.get("kind") == "pretrained":
            return PretrainedTokenizer(data["tokenizer"])
        raise ValueError(f"unknown tokenizer kind {data.get('kind')!r}")


class CharTokenizer(Tokenizer):
    """One id per character, ids in sorted order of the alphabet."""

    kind = "char"

    def __init__(self, alphabet: Iterable[str]):
        self.alphabet = sorted(set(alphabet))
        self._index = {c: i for i, c in enumerate(self.alphabet)}

    @classmethod
    def train(cls, documents: Iterable[str]) -> "CharTokenizer":
        chars: set[str] = set()
        for doc in documents:
            chars.update(doc)
        return cls(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the tokenizer's alphabet") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.alphabet[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"kind": "char", "alphabet": self.alphabet}, ensure_ascii=False)


class BPETokenizer(Tokenizer):
    """Byte-level BPE from Hugging Face ``tokenizers`` (trained locally, never downloaded)."""

    kind = "bpe"

    def __init__(self, serialized: str):

        self._serialized = serialized
        self._tok = HFTokenizer.from_str(serialized)

    @classmethod
    def train(cls, documents: list[str], vocab_size: int) -> "BPETokenizer":

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        tok.train_from_iterator(documents, trainer=trainer, length=len(documents))
        return cls(tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids))

    def to_json(self) -> str:
        return json.dumps({"kind": "bpe", "tokenizer": self._serialized})


class PretrainedTokenizer(Tokenizer):
    """A pretrained model's fast tokenizer (its folder's ``tokenizer.json``); documents are encoded
    without special tokens (a generator adds its own begin/end markers)."""

    kind = "pretrained"
    FILE = "tokenizer.json"

    def __init__(self, serialized: str):

        self._serialized = serialized
        self._tok = HFTokenizer.from_str(serialized)

    @classmethod
    def from_folder(cls, folder) -> "PretrainedTokenizer":

        return cls((Path(folder).expanduser() / cls.FILE).read_text(encoding="utf-8"))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        return json.dumps({"kind": "pretrained", "tokenizer": self._serialized})


class SymbolTokenizer(Tokenizer):
    """The tokens of a synthetic source: id i is the word ``t<i>``; texts are space-separated words."""

    kind = "symbols"

    def __init__(self, vocab_size: int):
        self._vocab_size = int(vocab_size)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str) -> list[int]:
        ids = [int(w[1:]) for w in text.split()]
        if any(not 0 <= i < self._vocab_size for i in ids):
            raise ValueError(f"symbol outside t0..t{self._vocab_size - 1}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(f"t{i}" for i in ids)

    def to_json(self) -> str:
        return json.dumps({"kind": "symbols", "vocab_size": self._vocab_size})


__all__ = ["PAD", "Tokenizer", "CharTokenizer", "BPETokenizer", "PretrainedTokenizer", "SymbolTokenizer", "lengths", "pad", "unpad", "check_tokens",
           "token_frequencies"]


def token_frequencies(x: np.ndarray, vocab_size: int) -> np.ndarray:
    """Relative frequency of each token id in a padded batch (zeros if it has no tokens)."""
    x = np.asarray(x)
    counts = np.bincount(x[x >= 0].ravel(), minlength=vocab_size).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts
