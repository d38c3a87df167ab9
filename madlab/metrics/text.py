"""Text metrics per generation (the ``tokens`` kind), against a held-out real reference set.

* ``perplexity`` — exp of the mean negative log-likelihood per token (end markers included) of
  the generation's *model* on the held-out real documents (Shumailov et al. 2024's headline metric);
  needs a generator with ``log_likelihood(x) -> (total log p, count)``.
* ``distinct_1`` .. ``distinct_4`` — distinct n-grams / all n-grams of the generated documents
  (Li et al. 2016), token n-grams within documents.
* ``self_bleu`` — mean sentence BLEU-4 (sacrebleu, effective order, 13a word tokenisation of the
  decoded text, score in [0, 1]) of each of the first :data:`SELF_BLEU_DOCS` generated documents
  against the others as references (Zhu et al. 2018, Texygen): high = the documents repeat each other.
* ``unigram_entropy`` (nats) and ``vocab_used`` (distinct token ids) of the generated tokens.
* ``tail_mass`` — the share of generated tokens among the real set's rare tokens: the least
  frequent tokens of the real reference set that together hold :data:`TAIL_FRACTION` of its tokens,
  so real text scores about TAIL_FRACTION and a model that lost its tail scores less.
* ``mean_length`` — tokens per generated document.

Synthetic sources add ``tv_truth``/``kl_truth`` (their ``extra_metrics``); generators add their own
``model_*`` metrics.

Feature-space metrics, only when ``metrics.names`` asks for them (they need the corpus's reference
encoder, trained once per corpus and cache, see :mod:`madlab.features.feature_extractor_text_lm`):
``fid, kid, precision, recall, density, coverage, vendi`` of the generated documents' ``text-lm``
features against the held-out real set's, computed by :mod:`madlab.metrics.feature` exactly as for
images. Rows then record ``extractor: text-lm`` and the encoder's weights hash.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from madlab.core.tokenizer import lengths, token_frequencies
from madlab.features.feature_extractor_text_lm import TextEncoder, ensure_text_lm
from madlab.metrics.feature import (METRIC_NAMES, RealStats, check_k, explicit_kid_subset_size, feature_metrics,
                                    resolve_kid_subset_size)
from madlab.metrics.registry import metric_names

#: Generated documents scored by self-BLEU (each against the other SELF_BLEU_DOCS - 1): O(n²) in this.
SELF_BLEU_DOCS = 100
#: The real token mass that defines the rare tokens of ``tail_mass``.
TAIL_FRACTION = 0.1

#: what the evaluator of token data computes by default (madlab.metrics.registry)
TEXT_METRICS = metric_names("tokens")
#: every metric that needs the corpus's text-lm encoder, computed when metrics.names lists it: the
#: feature metrics and ``ref_perplexity``, the perplexity of the *generated* text under text-lm, the
#: reference language model trained on the real corpus (a quality figure: real-like text scores low;
#: the report's real-vs-real row is real text's)
TEXT_LM_METRICS = metric_names("tokens", on_request=True)
#: those computed on text-lm features (madlab.metrics.feature.METRIC_NAMES)
TEXT_FEATURE_METRICS = tuple(name for name in TEXT_LM_METRICS if name in METRIC_NAMES)


def distinct_n(x: np.ndarray, n: int) -> float:
    """Distinct n-grams / all n-grams over the documents of a padded batch (0 if there are none).

    An n-gram is one integer key (base = largest id + 1), so counting is one ``np.unique``."""
    x = np.asarray(x, dtype=np.int64)
    if x.shape[1] < n:
        return 0.0
    base = int(x.max()) + 1 if x.size else 1
    win = np.lib.stride_tricks.sliding_window_view(x, n, axis=1).reshape(-1, n)
    win = win[(win >= 0).all(1)]  # windows inside a document (padding only follows the tokens)
    if not len(win):
        return 0.0
    if float(base) ** n < 2.0**62:
        keys = np.zeros(len(win), dtype=np.int64)
        for j in range(n):
            keys = keys * base + win[:, j]
        distinct = len(np.unique(keys))
    else:
        distinct = len(np.unique(win, axis=0))
    return distinct / len(win)


def self_bleu(texts: list[str], limit: int = SELF_BLEU_DOCS) -> float:
    """Mean sentence BLEU-4 (0..1) of each of the first ``limit`` texts against all the others.

    Identical to averaging sacrebleu's ``BLEU(effective_order=True).sentence_score(text_i, others)``
    (tests/test_text_metrics.py checks it), but O(n) instead of O(n²): sacrebleu would re-count the
    n - 1 references for every hypothesis, while the leave-one-out maximum count of an n-gram over
    the others is the largest count over all texts unless this text holds it alone (then the second
    largest), and the closest other length comes from the sorted lengths. sacrebleu still does the
    tokenisation (13a) and the score (``BLEU.compute_bleu``, 'exp' smoothing, effective order).
    """

    texts = texts[:limit]
    if len(texts) < 2:
        return float("nan")
    tokenize = Tokenizer13a()
    words = [tokenize(t.rstrip()).split() for t in texts]
    counts = [[Counter(tuple(w[i:i + n]) for i in range(len(w) - n + 1)) for n in range(1, 5)] for w in words]
    top: list[dict] = [{} for _ in range(4)]  # n-gram -> (largest count, its holder, second largest)
    for doc, per_n in enumerate(counts):
        for n, counter in enumerate(per_n):
            table = top[n]
            for gram, c in counter.items():
                best, holder, second = table.get(gram, (0, -1, 0))
                if c > best:
                    table[gram] = (c, doc, best)
                elif c > second:
                    table[gram] = (best, holder, c)
    lengths_all = np.array([len(w) for w in words])
    scores = []
    for doc, per_n in enumerate(counts):
        correct, total = [], []
        for n, counter in enumerate(per_n):
            table = top[n]
            hit = 0
            for gram, c in counter.items():
                best, holder, second = table[gram]
                hit += min(c, second if holder == doc else best)
            correct.append(hit)
            total.append(sum(counter.values()))
        others = np.delete(lengths_all, doc)
        hyp = lengths_all[doc]
        ref_len = int(min(others, key=lambda r: (abs(int(r) - int(hyp)), int(r))))
        scores.append(BLEU.compute_bleu(correct, total, int(hyp), ref_len, smooth_method="exp",
                                        effective_order=True).score)
    return float(np.mean(scores) / 100.0)


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def rare_tokens(real_freq: np.ndarray, fraction: float = TAIL_FRACTION) -> np.ndarray:
    """Ids of the least frequent real tokens (among those that occur) holding at most ``fraction`` of the mass."""
    seen = np.nonzero(real_freq > 0)[0]
    order = seen[np.argsort(real_freq[seen], kind="stable")]
    cum = np.cumsum(real_freq[order])
    return order[cum <= fraction + 1e-12]


class TextEvaluator:
    """``evaluator(fake: Samples, generator=...) -> dict`` for one run (real statistics computed once)."""

    def __init__(self, dataset, metrics_cfg, real_eval, *, device: str = "cpu"):
        self.dataset = dataset
        self.tokenizer = dataset.tokenizer
        self.vocab_size = dataset.vocab_size
        self.real = np.asarray(real_eval.x)
        self.names = set(metrics_cfg.names) if metrics_cfg.names is not None else set(TEXT_METRICS)
        real_freq = token_frequencies(self.real, self.vocab_size)
        self.rare = rare_tokens(real_freq)
        self.metadata = {"extractor": "tokens", "extractor_hash": self.tokenizer.digest,
                         "tokenizer": self.tokenizer.kind, "tokenizer_hash": self.tokenizer.digest,
                         "vocab_size": str(self.vocab_size), "n_real_eval": str(len(self.real))}
        self.feature_names = tuple(n for n in TEXT_FEATURE_METRICS if n in self.names)
        self.uses_encoder = bool(self.names & set(TEXT_LM_METRICS))
        if self.uses_encoder:
            self._load_encoder(metrics_cfg, device)

    def _load_encoder(self, metrics_cfg, device: str) -> None:
        """The corpus's pinned text-lm encoder (trained on first use) and the real set's feature statistics."""
        self.k = int(getattr(metrics_cfg, "k", 5))
        self.kid_subset_size = explicit_kid_subset_size(metrics_cfg)
        n_real, n_fake = len(self.real), getattr(metrics_cfg, "n_eval", None) or len(self.real)
        if {"precision", "recall", "density", "coverage"} & set(self.feature_names):
            check_k(self.k, n_real, n_fake)
        if "kid" in self.feature_names:
            resolve_kid_subset_size(self.kid_subset_size, n_real, n_fake)
        device = getattr(metrics_cfg, "device", None) or device
        self.encoder = TextEncoder(ensure_text_lm(self.dataset.encoder_corpus(), self.tokenizer, verbose=True), device)
        self.real_stats = RealStats.from_features(self.encoder.features(self.real), k=self.k)
        self.metadata.update(self.encoder.identity)

    def __call__(self, fake, generator=None) -> dict[str, float]:
        x = np.asarray(fake.x)
        out: dict[str, float] = {}
        want = self.names.__contains__
        if want("perplexity") and hasattr(generator, "log_likelihood"):
            total, count = generator.log_likelihood(self.real)
            out["perplexity"] = float(np.exp(-total / count)) if count else float("nan")
        for n in range(1, 5):
            if want(f"distinct_{n}"):
                out[f"distinct_{n}"] = distinct_n(x, n)
        if want("self_bleu"):
            out["self_bleu"] = self_bleu(self.tokenizer.decode_batch(x[:SELF_BLEU_DOCS]))
        freq = token_frequencies(x, self.vocab_size)
        if want("unigram_entropy"):
            out["unigram_entropy"] = entropy(freq)
        if want("vocab_used"):
            out["vocab_used"] = float((freq > 0).sum())
        if want("tail_mass"):
            out["tail_mass"] = float(freq[self.rare].sum())
        if want("mean_length"):
            out["mean_length"] = float(lengths(x).mean()) if len(x) else 0.0
        if self.uses_encoder:
            features, nll, count = self.encoder.score(x)
            if self.feature_names:
                out.update(feature_metrics(self.real_stats, features, k=self.k, names=self.feature_names,
                                           kid_subset_size=self.kid_subset_size))
            if want("ref_perplexity"):
                out["ref_perplexity"] = float(np.exp(nll / count)) if count else float("nan")
        return out


__all__ = ["TextEvaluator", "TEXT_METRICS", "TEXT_FEATURE_METRICS", "TEXT_LM_METRICS", "distinct_n", "self_bleu", "token_frequencies", "rare_tokens",
           "entropy"]
