"""Text metrics equal independent implementations written out by hand on small cases."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from madlab.metrics.text import distinct_n, entropy, rare_tokens, self_bleu, token_frequencies
from madlab.core.samples import Samples
from madlab.core.tokenizer import pad
from madlab_generators.ngram import NGramGenerator


def test_distinct_n_by_hand():
    x = pad([[1, 2, 1, 2], [1, 2, 3], [4]], 6)
    assert distinct_n(x, 1) == pytest.approx(4 / 8)  # tokens {1,2,3,4} among 8
    assert distinct_n(x, 2) == pytest.approx(3 / 5)  # (1,2) (2,1) (1,2) | (1,2) (2,3)
    assert distinct_n(x, 3) == pytest.approx(3 / 3)  # (1,2,1) (2,1,2) | (1,2,3)
    assert distinct_n(x, 4) == pytest.approx(1 / 1)
    assert distinct_n(pad([[5]], 3), 2) == 0.0


def _bleu_by_hand(hyp: str, refs: list[str]) -> float:
    """Sentence BLEU-4 as sacrebleu defines it: clipped n-gram matches against all references, closest
    reference length for the brevity penalty, 'exp' smoothing of zero-match orders, effective order."""
    h = hyp.split()
    rs = [r.split() for r in refs]
    correct, total = [], []
    for n in range(1, 5):
        hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
        best = Counter()
        for r in rs:
            for g, c in Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1)).items():
                best[g] = max(best[g], c)
        correct.append(sum(min(c, best[g]) for g, c in hc.items()))
        total.append(sum(hc.values()))
    if not any(correct):
        return 0.0
    ref_len = min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
    bp = 1.0 if len(h) >= ref_len else math.exp(1 - ref_len / len(h))
    logs, smooth = [], 1.0
    for n in range(4):
        if total[n] == 0:
            break
        if correct[n] == 0:
            smooth *= 2
            logs.append(math.log(1 / (smooth * total[n])))
        else:
            logs.append(math.log(correct[n] / total[n]))
    return bp * math.exp(sum(logs) / len(logs))


def test_self_bleu_equals_hand_computed_bleu():
    texts = ["the cat sat on the mat", "the cat sat on a hat", "a dog ran in the park today",
             "the mat was on the cat", "cat"]
    expected = np.mean([_bleu_by_hand(h, texts[:i] + texts[i + 1:]) for i, h in enumerate(texts)])
    assert self_bleu(texts) == pytest.approx(expected, abs=1e-9)
    assert self_bleu(["a b c d e"] * 3) == pytest.approx(1.0)


def test_self_bleu_equals_sacrebleu_leave_one_out():
    """The O(n) leave-one-out counts give exactly sacrebleu's sentence scores, punctuation included."""
    from sacrebleu.metrics import BLEU

    rng = np.random.default_rng(0)
    vocab = ["the", "cat", "sat", "on", "mat", ",", "a", "dog.", "(x)", "ran"]
    texts = [" ".join(rng.choice(vocab, rng.integers(1, 12))) for _ in range(25)] + ["the cat sat"] * 2
    bleu = BLEU(effective_order=True)
    expected = np.mean([bleu.sentence_score(h, texts[:i] + texts[i + 1:]).score for i, h in enumerate(texts)]) / 100
    assert self_bleu(texts) == pytest.approx(expected, abs=1e-12)


def test_frequencies_entropy_and_tail():
    x = pad([[0, 0, 0, 1], [0, 2, 0, 0], [0, 0, 3]], 4)  # 8 zeros, one each of 1, 2, 3
    f = token_frequencies(x, 5)
    np.testing.assert_allclose(f, [8 / 11, 1 / 11, 1 / 11, 1 / 11, 0])
    assert entropy(f) == pytest.approx(-(8 / 11 * math.log(8 / 11) + 3 / 11 * math.log(1 / 11)))
    # rare tokens: least frequent seen tokens holding at most 10% / 20% of the mass
    assert set(rare_tokens(f, 0.1).tolist()) == {1}
    assert set(rare_tokens(f, 0.2).tolist()) == {1, 2}
    assert 4 not in rare_tokens(f, 0.5)  # a token the real set never uses is not "rare", it is absent


def test_perplexity_by_direct_summation():
    """log_likelihood of a bigram with add-k equals Σ log p summed by hand from counted bigrams."""
    vocab, k = 4, 0.5
    train = [[0, 1, 2], [0, 1, 1, 3], [2, 2]]
    gen = NGramGenerator(NGramGenerator.Params(order=2, add_k=k), data_shape=(6,), vocab_size=vocab)
    gen.fit(Samples(pad(train, 6)), seed=0)
    b = vocab  # boundary id
    pairs = Counter()
    for row in train:
        seq = [b] + row + [b]  # every row ended before the context length 6
        pairs.update(zip(seq[:-1], seq[1:]))
    ctx = Counter()
    for (c, _), n in pairs.items():
        ctx[c] += n
    test = [[0, 1, 3], [3, 0]]  # context 3 is seen (once, before the end); 3 -> 0 never seen
    expected, count = 0.0, 0
    for row in test:
        seq = [b] + row + [b]
        for c, w in zip(seq[:-1], seq[1:]):
            expected += math.log((pairs[(c, w)] + k) / (ctx[c] + k * (vocab + 1)))
            count += 1
    total, n = gen.log_likelihood(pad(test, 6))
    assert n == count
    assert total == pytest.approx(expected, rel=1e-12)


def test_unseen_context_backs_off_to_the_unigram():
    vocab, k = 3, 0.5
    gen = NGramGenerator(NGramGenerator.Params(order=2, add_k=k), data_shape=(4,), vocab_size=vocab)
    gen.fit(Samples(pad([[0, 1, 1, 1]], 4)), seed=0)  # a row that fills the context: no end counted
    # bigram contexts seen: boundary {0: 1}, 0 {1: 1}, 1 {1: 2}; unigram counts {0: 1, 1: 3}; 4 outcomes
    total, n = gen.log_likelihood(pad([[0, 2, 1]], 4))
    expected = (math.log(1.5 / 3) + math.log(0.5 / 3)   # b -> 0, 0 -> 2
                + math.log(3.5 / 6)                     # 2 -> 1: context 2 never seen, the unigram answers
                + math.log(0.5 / 4))                    # 1 -> end
    assert n == 4 and total == pytest.approx(expected, rel=1e-12)


def test_maximum_likelihood_reproduces_a_single_row():
    gen = NGramGenerator(NGramGenerator.Params(order=2, add_k=0.0), data_shape=(4,), vocab_size=3)
    gen.fit(Samples(pad([[0, 1, 1, 1]], 4)), seed=0)
    assert gen.log_likelihood(pad([[2]], 4))[0] == -math.inf  # p(2 | start) = 0 under MLE
    x = gen.sample(200, bias=1.0, seed=0).x
    assert (x[:, 0] == 0).all() and (x[:, 1:] == 1).all()
