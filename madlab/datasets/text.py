"""Text datasets of the ``tokens`` kind: ``pydoc-text`` (embedded), ``text`` (local files), ``zipf-text`` and
``markov-text`` (synthetic, with a known true distribution).

Every text dataset hands out documents encoded as padded token batches (see :mod:`madlab.core.tokenizer`):
``Samples.x`` int64 ``(n, max_tokens)``, token ids then ``PAD``. Corpus datasets share the image
datasets' contract: a fixed training pool of documents, ``draw(n, seed=, offset=)`` = rows
``[offset, offset + n)`` of a permutation of that pool fixed by ``seed``, so ``fresh-real`` never
reuses a document (asking beyond the pool is an error); a held-out split (``heldout`` documents,
chosen by the dataset alone, not the run seed) is the real reference set of every metric.

Everything that can be wrong with a corpus (missing folder, no text files, an empty or
non-UTF-8 file, a JSONL line that is not an object with the text field) is a one-line
:class:`~madlab.core.errors.DatasetError` naming the file, raised when the dataset is opened, which
``madlab validate`` does before anything runs.
"""
from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from pydoc_data.topics import topics
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from madlab.core.errors import DatasetError
from madlab.core.samples import Samples
from madlab.core.tokenizer import (BPETokenizer, CharTokenizer, PretrainedTokenizer, SymbolTokenizer, Tokenizer, pad,
                                   token_frequencies)
from madlab.datasets.hf_saved import read_saved_split, saved_splits
from madlab.plugins.dataset import Dataset, disjoint_real_sample
from madlab.plugins.generator import Params
from madlab.plugins.registry import get_generator_class
from madlab.schema.config import eval_size

_TRAIN_SALT, _HOLDOUT_SALT, _EVAL_SALT, _ENCODER_SALT, _RVR_SALT = 21, 22, 23, 24, 25
#: Sequences of an unlimited (synthetic) source that the text-lm reference encoder trains on.
ENCODER_DOCS = 2000


def _permutation(size: int, *seeds: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence(list(seeds))).permutation(size)


class TextParams(Params):
    max_tokens: int = Field(128, ge=2, le=65_536, description="context: documents are cut to this many tokens")
    tokenizer: Literal["char", "bpe", "pretrained"] = "char"
    tokenizer_path: str | None = Field(None, description="pretrained: a folder holding a tokenizer.json "
                                                          "(a local Hugging Face model folder, for hf-lm)")
    bpe_vocab_size: int = Field(512, ge=260, le=65_536, description="BPE: vocabulary size (byte-level: > 256)")
    heldout: int | None = Field(None, ge=1, description="documents held out as the metric reference set "
                                                        "(default 10% of the corpus)")
    max_chars: int | None = Field(None, ge=16, description="split longer documents at whitespace into "
                                                           "pieces of at most this many characters")
    min_chars: int = Field(1, ge=1, description="drop documents shorter than this")


class TokenDataset(Dataset):
    """Any dataset of the ``tokens`` kind: a tokenizer, a context length and the encoded draws."""

    kind: ClassVar[str] = "tokens"

    @property
    def max_tokens(self) -> int:
        return self.params.max_tokens

    @property
    def shape(self):
        return (self.max_tokens,)

    @property
    def tokenizer(self) -> Tokenizer:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def true_unigram(self) -> np.ndarray | None:
        """The true token distribution, for synthetic sources."""
        return None

    def encoder_corpus(self) -> np.ndarray:
        """The real documents the ``text-lm`` reference encoder trains on (padded int64 rows): a fixed
        draw of :data:`ENCODER_DOCS` sequences here; a corpus's whole training pool (CorpusDataset)."""
        return np.asarray(self.draw(ENCODER_DOCS, seed=_ENCODER_SALT).x)

    def check_run(self, run) -> None:
        """Validate-time check of a generator against this vocabulary (``check_dataset(params, dataset)``,
        e.g. the n-gram's key width), which the shape-only ``Generator.check`` cannot see."""
        cls = get_generator_class(run.generator["name"])
        check = getattr(cls, "check_dataset", None)
        if check is not None:
            check(cls.Params.model_validate({k: v for k, v in run.generator.items() if k != "name"}), self)


class CorpusDataset(TokenDataset):
    """A finite corpus of documents, cut and tokenized once; see the module docstring."""

    Params = TextParams

    def __init__(self, params):
        super().__init__(params)
        docs = [d for d in _split_long(self._documents(), params.max_chars) if len(d) >= params.min_chars]
        docs = list(dict.fromkeys(docs))  # exact duplicates dropped: a drawn document is never seen twice
        if len(docs) < 2:
            raise DatasetError(f"{self.name}: the corpus holds {len(docs)} document(s) of at least "
                               f"{params.min_chars} characters; it needs a training pool and a held-out split")
        self.documents = docs
        _check_tokenizer_path(params)
        held = params.heldout if params.heldout is not None else max(1, len(docs) // 10)
        if held >= len(docs):
            raise DatasetError(f"dataset.heldout={held} leaves no training documents ({self.name} has {len(docs)})")
        order = _permutation(len(docs), _HOLDOUT_SALT)
        self._train_idx, self._held_idx = np.sort(order[:-held]), np.sort(order[-held:])

    def _documents(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def tokenizer(self) -> Tokenizer:
        if self.params.tokenizer == "pretrained":
            return PretrainedTokenizer.from_folder(self.params.tokenizer_path)
        if self.params.tokenizer == "bpe":
            return BPETokenizer.train([self.documents[i] for i in self._train_idx], self.params.bpe_vocab_size)
        return CharTokenizer.train(self.documents)  # the whole alphabet, so held-out text encodes too

    @cached_property
    def _encoded(self) -> np.ndarray:
        tok = self.tokenizer
        return pad((tok.encode(d) for d in self.documents), self.max_tokens)

    @property
    def size(self) -> int:
        return len(self._train_idx)

    @property
    def heldout_size(self) -> int:
        return len(self._held_idx)

    def draw_indices(self, n: int, *, seed: int, offset: int = 0) -> np.ndarray:
        """Which documents ``draw`` returns (indices into ``documents``)."""
        if n < 0 or offset < 0:
            raise DatasetError(f"{self.name}: cannot draw n={n} documents at offset {offset}")
        if offset + n > self.size:
            who = "fresh-real" if offset else "the loop"
            raise DatasetError(f"{self.name}: {who} needs {offset + n} real documents but the training pool "
                               f"has {self.size}; lower loop.n_real / loop.generations or use a larger corpus")
        return self._train_idx[_permutation(self.size, seed, _TRAIN_SALT)][offset:offset + n]

    def draw(self, n, *, seed, offset=0):
        return Samples(self._encoded[self.draw_indices(n, seed=seed, offset=offset)])

    def eval_indices(self, n: int, *, seed: int) -> np.ndarray:
        if n > self.heldout_size:
            raise DatasetError(f"{self.name}: metrics want {n} held-out documents but the held-out split has "
                               f"{self.heldout_size}; lower metrics.n_eval or raise dataset.heldout")
        return np.sort(self._eval_order(seed)[:n])

    def _eval_order(self, seed: int) -> np.ndarray:
        """The held-out documents in the order ``seed`` fixes: the reference set is its first n."""
        return self._held_idx[_permutation(self.heldout_size, seed, _EVAL_SALT)]

    def eval_set(self, n, *, seed):
        return Samples(self._encoded[self.eval_indices(n, seed=seed)])

    def eval_source(self) -> str:
        return "held-out split"

    def training_pool_eval_set(self, n, *, seed):
        """``n`` training documents (a permutation of their own): ``metrics.reference: training-pool``."""
        if n > self.size:
            raise DatasetError(f"{self.name}: metrics want {n} real documents but the training pool has {self.size}; "
                               f"lower metrics.n_eval")
        return Samples(self._encoded[np.sort(self._train_idx[_permutation(self.size, seed, _EVAL_SALT)][:n])])

    def real_vs_real_set(self, n, *, seed, reference_seed):
        """Documents the reference set ``eval_set(n, seed=reference_seed)`` does not hold: the rest of the
        held-out split, then training documents (order ``seed``)."""
        def rows(idx):
            return Samples(self._encoded[idx])

        train = self._train_idx[_permutation(self.size, seed, _RVR_SALT)]
        return disjoint_real_sample(n, self._eval_order(reference_seed), rows, train, rows)

    def training_documents(self) -> list[str]:
        return [self.documents[i] for i in self._train_idx]

    def encoder_corpus(self) -> np.ndarray:
        """The whole training pool (never the held-out split the metrics score against)."""
        return self._encoded[self._train_idx]

    def check_run(self, run) -> None:
        """Validate-time check: the held-out split holds the documents the metrics score."""
        super().check_run(run)
        n = eval_size(run)
        if getattr(run.metrics, "reference", "heldout") == "training-pool":
            if n > self.size:
                raise DatasetError(f"metrics.n_eval: metrics want {n} real documents but {self.name}'s training pool "
                                   f"has {self.size}; lower metrics.n_eval")
        elif n > self.heldout_size:
            raise DatasetError(f"metrics.n_eval: metrics want {n} held-out documents but {self.name} holds out "
                               f"{self.heldout_size}; lower metrics.n_eval or raise dataset.heldout")


def _check_tokenizer_path(params) -> None:
    """``tokenizer: pretrained`` needs a readable ``tokenizer_path/tokenizer.json``; other tokenizers take none."""
    if params.tokenizer != "pretrained":
        if params.tokenizer_path is not None:
            raise DatasetError(f"dataset.tokenizer_path: only read with tokenizer: pretrained (got {params.tokenizer})")
        return
    if params.tokenizer_path is None:
        raise DatasetError("dataset.tokenizer_path: tokenizer: pretrained needs the folder of a tokenizer.json "
                           "(e.g. the local model folder of hf-lm)")
    path = Path(params.tokenizer_path).expanduser() / PretrainedTokenizer.FILE
    if not path.is_file():
        raise DatasetError(f"dataset.tokenizer_path: {path} does not exist (a fast tokenizer saved with "
                           f"save_pretrained writes it)")
    try:
        PretrainedTokenizer.from_folder(path.parent)
    except Exception as exc:  # tokenizers raises its own exception type for a malformed file
        raise DatasetError(f"dataset.tokenizer_path: {path} is not a tokenizers JSON file "
                           f"({str(exc).splitlines()[0][:120]})") from None


def _split_long(docs: list[str], max_chars: int | None) -> list[str]:
    """Cut documents longer than ``max_chars`` at whitespace (a piece may be a hard cut if one word is longer)."""
    if max_chars is None:
        return list(docs)
    out = []
    for doc in docs:
        while len(doc) > max_chars:
            cut = doc.rfind(" ", max_chars // 2, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            out.append(doc[:cut].strip())
            doc = doc[cut:].strip()
        if doc:
            out.append(doc)
    return out


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


class PydocTextDataset(CorpusDataset):
    """CPython's embedded documentation (``pydoc_data.topics``, ~465k characters): no download.

    Each help topic is cut into paragraphs (blank-line separated) of at least ``min_chars`` (40)
    characters; paragraphs longer than ``max_chars`` (128, the default context of the character
    tokenizer) are split at whitespace; exact duplicates are dropped. 3,242 documents on
    Python 3.11; the text depends on the Python version (the tokenizer digest is recorded per run).
    """

    name = "pydoc-text"

    class Params(TextParams):
        max_chars: int | None = Field(128, ge=16)
        min_chars: int = Field(40, ge=1)

    def _documents(self):

        return [p for key in sorted(topics) for p in _paragraphs(topics[key])]


class TextFolderDataset(CorpusDataset):
    """A local corpus: a folder of ``.txt``/``.jsonl`` files, or a Hugging Face ``datasets`` folder.

    * ``.txt`` files (searched recursively, ordered by path): ``split: paragraph`` (default) makes
      each blank-line separated paragraph a document, ``line`` each non-empty line, ``file`` each file.
    * ``.jsonl`` files: one JSON object per line, the document in ``field`` (default ``text``).
    * a folder written by ``datasets.Dataset.save_to_disk`` (``state.json`` + ``*.arrow``) or
      ``DatasetDict.save_to_disk`` (``dataset_dict.json``; ``hf_split`` picks the split, default
      ``train``): rows of ``field`` are the documents (empty rows skipped). Read with pyarrow, so the
      ``datasets`` package is not needed. This is how wikitext-2 or TinyStories arrive offline.
    """

    name = "text"

    class Params(TextParams):
        root: str
        split: Literal["paragraph", "line", "file"] = "paragraph"
        field: str = "text"
        hf_split: str = "train"

    def _documents(self):
        root = Path(self.params.root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"dataset.root: {root} is not a folder")
        if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
            return self._hf_documents(root)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
        if not files:
            raise DatasetError(f"dataset.root: {root} holds no .txt or .jsonl files")
        docs: list[str] = []
        for path in files:
            text = _read_text(path)
            if path.suffix == ".jsonl":
                docs += self._jsonl(path, text)
            elif self.params.split == "file":
                docs.append(text.strip())
            elif self.params.split == "line":
                docs += [line.strip() for line in text.splitlines() if line.strip()]
            else:
                docs += _paragraphs(text)
        return docs

    def _jsonl(self, path: Path, text: str) -> list[str]:
        field, docs = self.params.field, []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise DatasetError(f"{path}:{number}: expected an object with a string {field!r} field")
            if row[field].strip():
                docs.append(row[field].strip())
        return docs

    def _hf_documents(self, root: Path) -> list[str]:
        table = read_saved_split(root, self.params.hf_split, [self.params.field], key="dataset.field")
        if table is None:
            raise DatasetError(f"dataset.hf_split: {self.params.hf_split!r} is not a split of {root} "
                               f"(splits: {', '.join(saved_splits(root))})")
        return [t.strip() for t in table.column(self.params.field).to_pylist() if isinstance(t, str) and t.strip()]


def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise DatasetError(f"{path}: empty text file")
    return text


# ------------------------------------------------------------------------------------ synthetic


class SyntheticParams(Params):
    vocab_size: int = Field(50, ge=2, le=100_000)
    max_tokens: int = Field(32, ge=1, le=65_536, description="every sequence has exactly this many tokens")


class SyntheticTokens(TokenDataset):
    """Sequences of exactly ``max_tokens`` tokens from a known distribution (unlimited, analytic).

    Rows never end early (no padding), so a model fitted to them samples full-length rows.
    ``extra_metrics`` scores generated tokens against the truth: ``tv_truth`` (total variation)
    and ``kl_truth`` = KL(q̂ ‖ p) of the generated token frequencies q̂ to the true marginal p
    (plug-in estimates on the generated sample; finite because p has full support).
    """

    extra_metric_names = frozenset({"tv_truth", "kl_truth"})

    @cached_property
    def tokenizer(self):
        return SymbolTokenizer(self.params.vocab_size)

    def extra_metrics(self, fake):
        q = token_frequencies(fake.x, self.vocab_size)
        p = self.true_unigram()
        nz = q > 0
        return {"tv_truth": float(0.5 * np.abs(q - p).sum()),
                "kl_truth": float((q[nz] * np.log(q[nz] / p[nz])).sum())}


class ZipfTextDataset(SyntheticTokens):
    """I.i.d. tokens from a Zipf law p_i ∝ (i + 1)^(-exponent), i < vocab_size.

    The unigram n-gram on this source is Wright–Fisher resampling: its collapse has closed forms
    (tests/test_ngram_theory.py).
    """

    name = "zipf-text"

    class Params(SyntheticParams):
        exponent: float = Field(1.1, ge=0.0, le=10.0)

    def true_unigram(self):
        w = (np.arange(self.params.vocab_size) + 1.0) ** -self.params.exponent
        return w / w.sum()

    def draw(self, n, *, seed, offset=0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, offset, 31]))
        x = rng.choice(self.params.vocab_size, size=(n, self.params.max_tokens), p=self.true_unigram())
        return Samples(x.astype(np.int64))


class MarkovTextDataset(SyntheticTokens):
    """A stationary first-order Markov chain over ``vocab_size`` tokens.

    Transition rows are Dirichlet(``concentration``) draws fixed by ``chain_seed`` (small
    concentration = peaked rows); the first token follows the stationary distribution π, so every
    position's marginal is π (``true_unigram``), and a bigram model is the matching theory model.
    """

    name = "markov-text"

    class Params(SyntheticParams):
        concentration: float = Field(0.3, gt=0.0)
        chain_seed: int = Field(0, ge=0)

    @cached_property
    def transition(self) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([self.params.chain_seed, 32]))
        v = self.params.vocab_size
        return rng.dirichlet(np.full(v, self.params.concentration), size=v)

    def true_unigram(self):
        w, vecs = np.linalg.eig(self.transition.T)
        pi = np.real(vecs[:, np.argmin(np.abs(w - 1))])
        pi = np.abs(pi) / np.abs(pi).sum()
        return pi

    def draw(self, n, *, seed, offset=0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, offset, 33]))
        v, length = self.params.vocab_size, self.params.max_tokens
        cdf = np.cumsum(self.transition, axis=1)
        x = np.empty((n, length), dtype=np.int64)
        x[:, 0] = rng.choice(v, size=n, p=self.true_unigram())
        u = rng.random((n, length))
        for j in range(1, length):
            x[:, j] = np.minimum((cdf[x[:, j - 1]] < u[:, j, None]).sum(1), v - 1)
        return Samples(x)
