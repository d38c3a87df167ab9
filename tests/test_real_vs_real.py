"""The report's real-vs-real sample: real data the metrics' reference set does not hold.

Two independent draws from one finite evaluation pool share rows (two draws of 200 from pydoc-text's 324
held-out documents share ~123), and shared rows make a real-vs-real level look better than any model
could score. ``Dataset.real_vs_real_set`` takes the rest of the pool, then training-pool data where the
pool is a split of its own, and shares rows with the reference only when both run out (and says how many).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from madlab.config import build_spec
from madlab.loop import Loop, derive_seed
from test_image_datasets import make, rows, write_images, write_mnist


def check(ds, n, *, seed=3, reference_seed=8, pool=None):
    """(sample, shared) after the checks every dataset must pass; ``pool`` = every real row it may use."""
    reference = set(rows(ds.eval_set(n, seed=reference_seed)))
    sample, shared = ds.real_vs_real_set(n, seed=seed, reference_seed=reference_seed)
    got = rows(sample)
    assert len(got) == n and len(set(got)) == n  # n distinct real rows
    assert len(set(got) & reference) == shared  # exactly the rows it says it shares
    if pool is not None:
        assert set(got) <= pool
    again, _ = ds.real_vs_real_set(n, seed=seed, reference_seed=reference_seed)
    # exact: the same rows drawn twice from the same seed
    np.testing.assert_array_equal(again.x, sample.x)  # deterministic (a resumed run scores the same rows)
    return sample, shared


def test_pydoc_text_never_shares_a_held_out_document():
    ds = make("pydoc-text")
    held = set(rows(ds.eval_set(ds.heldout_size, seed=0)))
    train = set(rows(ds.draw(ds.size, seed=0)))
    for n in (100, 162, 200, ds.heldout_size):  # 200 > 324 / 2: the rest of the split, then training documents
        sample, shared = check(ds, n, pool=held | train)
        assert shared == 0
        from_held = len(set(rows(sample)) & held)
        assert from_held == min(n, ds.heldout_size - n)  # the whole rest of the held-out split first


def test_mnist_test_split_then_training_images(tmp_path):
    write_mnist(tmp_path, n_train=60, n_test=20)
    ds = make("mnist", root=str(tmp_path))
    test = set(rows(ds.eval_set(20, seed=0)))
    train = set(rows(ds.draw(60, seed=0)))
    sample, shared = check(ds, 8, pool=test)  # 20 test images hold 8 + 8
    assert shared == 0
    sample, shared = check(ds, 15, pool=test | train)
    assert shared == 0 and len(set(rows(sample)) & test) == 5 and len(set(rows(sample)) & train) == 10
    assert sample.y is not None and len(sample.y) == 15  # labels come along from both splits


def test_holdout_split_then_training_images(tmp_path):
    write_images(tmp_path, n=10)
    ds = make("ffhq", root=str(tmp_path), resolution=8, holdout=4)
    sample, shared = check(ds, 3)  # 1 more held-out image, then 2 training images
    assert shared == 0 and len(set(rows(sample)) & set(rows(ds.draw(ds.size, seed=0)))) == 2


def test_a_pool_that_is_the_training_pool_shares_only_what_it_must(tmp_path):
    write_images(tmp_path, n=6)
    ds = make("ffhq", root=str(tmp_path), resolution=8)  # no test split, no holdout: 6 images in all
    assert check(ds, 3)[1] == 0
    assert check(ds, 4)[1] == 2  # 6 images cannot hold two disjoint sets of 4: 2 rows are shared, no more
    assert check(ds, 6)[1] == 6


def test_unlimited_sources_draw_an_independent_sample():
    ds = make("gaussian", dim=3)
    sample, shared = ds.real_vs_real_set(50, seed=1, reference_seed=2)
    assert shared == 0
    # exact: the same rows drawn from the same seed
    np.testing.assert_array_equal(sample.x, ds.eval_set(50, seed=1).x)


def _text_run(tmp_path, heldout, n_eval):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    docs = [" ".join(rng.choice(words, 12)) + f" {i}" for i in range(60)]
    (corpus / "docs.txt").write_text("\n\n".join(docs) + "\n")
    spec = {"name": "rvr", "seed": 0, "dataset": {"name": "text", "root": str(corpus), "heldout": heldout,
                                                  "max_tokens": 96},
            "generator": {"name": "ngram", "order": 2, "add_k": 0.1},
            "loop": {"scheme": "fully-synthetic", "generations": 1, "n_real": 30, "n_synthetic": 30},
            "metrics": {"n_eval": n_eval, "names": ["distinct_1", "distinct_2", "vocab_used"]}}
    return build_spec(spec).runs[0].config


def test_the_loop_scores_the_disjoint_sample_and_records_what_it_shares(tmp_path):
    config = _text_run(tmp_path, heldout=12, n_eval=8)  # 12 held out: 4 of them, then 4 training documents
    loop = Loop(config, tmp_path / "run")
    loop.run()
    metadata = json.loads((loop.store.gen_dir(1) / "DONE").read_text())["metadata"]
    seed = config.seed
    sample, shared = loop.dataset.real_vs_real_set(8, seed=derive_seed(seed, "eval", 1),
                                                   reference_seed=derive_seed(seed, "eval"))
    assert shared == 0 and "real_vs_real_shared" not in metadata
    expected = loop.evaluator(sample)
    assert metadata["real_vs_real"] == pytest.approx({k: expected[k] for k in metadata["real_vs_real"]})
    reference = set(rows(loop.dataset.eval_set(8, seed=derive_seed(seed, "eval"))))
    assert not set(rows(sample)) & reference
