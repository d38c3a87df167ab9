"""Feature-space metrics of the ``tokens`` kind on the corpus's pinned ``text-lm`` reference encoder."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from madlab.datasets.text import TextFolderDataset
from madlab.features import feature_extractor_text_lm as text_lm
from madlab.metrics.feature import feature_metrics
from madlab.metrics.text import TEXT_FEATURE_METRICS

#: The default recipe with the context cut to the test corpus's documents (64 tokens + the begin marker):
#: the encoder the runs would train, in about 15 s. (Smaller or shorter-trained models are too weak to
#: see the shuffling: 150 steps at width 32 gave FID 0.21 real-vs-real and 0.45 shuffled.)
QUICK = {"context": 65}


def write_corpus(folder, every: int = 3):
    """Paragraphs of CPython's help topics (every ``every``-th topic) as one text file in ``folder``."""
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    paragraphs = [p.strip() for key in sorted(topics)[::every] for p in topics[key].split("\n\n") if len(p.strip()) > 40]
    (folder / "corpus.txt").write_text("\n\n".join(paragraphs))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = write_corpus(tmp_path_factory.mktemp("corpus"))
    return TextFolderDataset(TextFolderDataset.Params(root=str(root), max_chars=64, max_tokens=64, heldout=400))


@pytest.fixture(scope="module")
def encoder_file(corpus, tmp_path_factory):
    return text_lm.ensure_text_lm(corpus.encoder_corpus(), corpus.tokenizer, directory=tmp_path_factory.mktemp("enc"),
                                  recipe=QUICK)


def shuffled(x: np.ndarray, seed: int) -> np.ndarray:
    """Each document's tokens in a random order (same tokens, same length)."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for row in out:
        n = int((row >= 0).sum())
        row[:n] = rng.permutation(row[:n])
    return out


def test_encoder_trains_and_records(encoder_file, corpus):
    record = json.loads(encoder_file.with_suffix(".json").read_text())
    assert record["name"] == "text-lm" and record["recipe"] == {**text_lm.RECIPE, **QUICK}
    assert record["corpus_documents"] == corpus.size
    assert record["sha256"] == text_lm.file_sha256(encoder_file)
    assert record["train_nll"] < np.log(corpus.vocab_size + 1)  # learned more than a uniform guess
    mtime = encoder_file.stat().st_mtime_ns
    again = text_lm.ensure_text_lm(corpus.encoder_corpus(), corpus.tokenizer, directory=encoder_file.parent, recipe=QUICK)
    assert again == encoder_file and encoder_file.stat().st_mtime_ns == mtime  # cached, not retrained


def test_two_trainings_give_the_same_bytes(corpus, tmp_path):
    """Bit-for-bit deterministic training in the pinned child process: two caches, one hash."""
    tiny = {"steps": 10, "d_model": 16, "n_layer": 1, "n_head": 2, "context": 33}
    a = text_lm.ensure_text_lm(corpus.encoder_corpus(), corpus.tokenizer, directory=tmp_path / "a", recipe=tiny)
    b = text_lm.ensure_text_lm(corpus.encoder_corpus(), corpus.tokenizer, directory=tmp_path / "b", recipe=tiny)
    assert a.name == b.name and text_lm.file_sha256(a) == text_lm.file_sha256(b)
    other = text_lm.encoder_path(corpus.encoder_corpus()[1:], corpus.tokenizer, directory=tmp_path / "a", recipe=tiny)
    assert other.name != a.name  # keyed to the corpus


def test_real_vs_real_far_below_real_vs_shuffled(encoder_file, corpus):
    encoder = text_lm.TextEncoder(encoder_file)
    held = corpus.eval_set(400, seed=0).x
    order = np.random.default_rng(1).permutation(len(held))
    a, b = held[order[:200]], held[order[200:]]
    fa, fb, fs = encoder.features(a), encoder.features(b), encoder.features(shuffled(b, 2))
    assert fa.shape == (200, text_lm.RECIPE["d_model"] + 1) and np.isfinite(fa).all()
    real = feature_metrics(fa, fb)
    shuf = feature_metrics(fa, fs)
    assert set(real) == set(TEXT_FEATURE_METRICS) and all(np.isfinite(v) for v in real.values())
    assert shuf["fid"] > 3 * real["fid"], (real["fid"], shuf["fid"])  # measured: 0.86 vs 3.16
    # the surprisal coordinate: shuffled text is far less likely under the reference LM (2.58 vs 4.05 nats)
    assert fs[:, -1].mean() > fb[:, -1].mean() + 1.0


def test_ref_perplexity_is_the_reference_lm_likelihood(encoder_file, corpus):
    """score()'s summed NLL is mean_nll's by direct summation of the model's log-softmax (another path
    through the network); and the reference LM finds shuffled text far less likely than real text."""
    encoder = text_lm.TextEncoder(encoder_file)
    x = corpus.eval_set(60, seed=0).x
    features, nll, count = encoder.score(x, batch_size=25)
    np.testing.assert_allclose(features, encoder.features(x), rtol=1e-5, atol=1e-5)
    inputs, targets, _ = text_lm.model_inputs(x, encoder.vocab_size, encoder.model.context)
    logp = torch.log_softmax(encoder.model(inputs).double(), -1)
    scored = targets != -100
    direct = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0][scored].sum()
    assert count == int(scored.sum()) and nll == pytest.approx(float(direct), rel=1e-4)
    assert nll / count == pytest.approx(text_lm.mean_nll(encoder.model, x), rel=1e-4)
    shuffled_nll, shuffled_count = encoder.score(shuffled(x, 3))[1:]
    assert shuffled_count == count and shuffled_nll / count > nll / count + 1.0


def test_features_do_not_depend_on_batching(encoder_file, corpus):
    encoder = text_lm.TextEncoder(encoder_file)
    x = corpus.eval_set(20, seed=0).x
    np.testing.assert_allclose(encoder.features(x, batch_size=7), encoder.features(x), rtol=1e-5, atol=1e-5)


def _spec(root, names, **metrics):
    return {"name": "textfeat", "seed": 0,
            "dataset": {"name": "text", "root": str(root), "max_chars": 48, "max_tokens": 48, "heldout": 60},
            "generator": {"name": "ngram", "order": 2},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 60, "n_synthetic": 60},
            "metrics": {"names": names, "k": 3, **metrics},
            "sweep": {"seed": [0, 1]}}


def test_loop_rows_carry_feature_metrics_and_one_encoder_hash(tmp_path, write_spec, cli, monkeypatch):
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(text_lm.RECIPE, "steps", 20)  # the run's default recipe, shortened for the test
    root = write_corpus(tmp_path / "corpus", every=12)
    names = ["fid", "kid", "precision", "recall", "density", "coverage", "vendi", "ref_perplexity", "distinct_2"]
    code, out, err = cli("run", write_spec(_spec(root, names)), "--out", tmp_path / "out", "--no-ray")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert set(table["metric"]) == set(names)
    assert len(table) == 2 * 2 * len(names) and np.isfinite(table["value"]).all()
    ref = table[table["metric"] == "ref_perplexity"]["value"]
    assert len(ref) == 4 and (ref > 1).all()  # a perplexity, per run and generation
    assert set(table["extractor"]) == {"text-lm"} and table["extractor_hash"].nunique() == 1
    cached = list((tmp_path / "cache" / "extractors").glob("text-lm-*.safetensors"))
    assert len(cached) == 1 and table["extractor_hash"].iloc[0] == text_lm.file_sha256(cached[0])[:16]


@pytest.mark.parametrize("metrics, key", [
    ({"names": ["fid", "bogus"]}, "metrics.names"),
    ({"names": ["fid"], "extractor": "inception"}, "metrics.extractor"),
    ({"names": ["kid"], "weights_path": "/nonexistent.safetensors"}, "metrics.weights_path"),
])
def test_bad_feature_metric_config_is_one_line_exit_2(tmp_path, write_spec, cli, metrics, key):
    root = write_corpus(tmp_path / "corpus", every=12)
    spec = _spec(root, metrics.pop("names"), **metrics)
    code, out, err = cli("validate", write_spec(spec))
    assert code == 2 and err.count("\n") == 1 and key in err, err
    assert not (tmp_path / "cache").exists()


def test_validate_accepts_feature_metrics_without_training(tmp_path, write_spec, cli, monkeypatch):
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
    root = write_corpus(tmp_path / "corpus", every=12)
    code, out, err = cli("validate", write_spec(_spec(root, ["fid", "vendi"], extractor="text-lm")))
    assert code == 0, err
    assert not (tmp_path / "cache").exists()  # validate trains nothing


def test_loop_rows_carry_memorisation_metrics_on_text_lm_features(tmp_path, write_spec, cli, monkeypatch):
    """The text kind scores the memorisation metrics on text-lm features against each generation's training
    documents and the held-out split (the encoder is trained once, as for the feature metrics)."""
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(text_lm.RECIPE, "steps", 20)
    root = write_corpus(tmp_path / "corpus", every=12)
    names = ["authenticity", "novelty", "copy_rate", "train_entropy", "novelty_heldout", "copy_rate_heldout"]
    code, out, err = cli("run", write_spec(_spec(root, names)), "--out", tmp_path / "out", "--no-ray")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert set(table["metric"]) == set(names) and np.isfinite(table["value"]).all()
    assert set(table["extractor"]) == {"text-lm"}
