"""The tokens kind: tokenizers, text datasets, bad input at validate time, runs that decode and resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from madlab.config import build_spec
from madlab.datasets import get_dataset_class
from madlab.errors import DatasetError, MadlabError
from madlab.loop import Loop
from madlab.samples import Samples
from madlab.storage import RunStore
from madlab.text_run import load_tokenizer
from madlab.tokenizer import PAD, BPETokenizer, CharTokenizer, Tokenizer, check_tokens, lengths, pad, unpad


def _dataset(name, **params):
    cls = get_dataset_class(name)
    return cls(cls.Params(**params))


# ------------------------------------------------------------------------------ tokenizers

def test_padding_convention():
    x = pad([[3, 1], [2, 2, 2, 2], []], 3)
    assert x.dtype == np.int64 and x.tolist() == [[3, 1, PAD], [2, 2, 2], [PAD, PAD, PAD]]
    assert lengths(x).tolist() == [2, 3, 0]
    assert [r.tolist() for r in unpad(x)] == [[3, 1], [2, 2, 2], []]
    assert check_tokens(x, 4) is None
    assert "lie in" in check_tokens(x, 3)
    assert "padding" in check_tokens(np.array([[PAD, 1]]), 3)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizers_round_trip_through_json(kind):
    docs = ["The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs — déjà vu!"] * 20
    tok = CharTokenizer.train(docs) if kind == "char" else BPETokenizer.train(docs, 300)
    again = Tokenizer.from_json(tok.to_json())
    for doc in docs[:2]:
        ids = tok.encode(doc)
        assert tok.decode(ids) == doc and again.encode(doc) == ids and again.decode(ids) == doc
    assert again.digest == tok.digest and again.vocab_size == tok.vocab_size
    if kind == "bpe":
        assert len(tok.encode(docs[0])) < len(docs[0])  # merges were learnt


# ------------------------------------------------------------------------------ datasets

def test_pydoc_corpus_draws_never_reuse_a_document():
    ds = _dataset("pydoc-text")
    assert ds.kind == "tokens" and ds.size > 2000 and ds.heldout_size > 200
    assert len(set(ds.documents)) == len(ds.documents)  # duplicates dropped
    a = ds.draw(300, seed=4).x
    # exact: integer token ids drawn from the same seed
    np.testing.assert_array_equal(a, ds.draw(300, seed=4).x)  # deterministic
    assert check_tokens(a, ds.vocab_size) is None
    assert ds.tokenizer.decode_batch(a[:1])[0] == ds.documents[ds.draw_indices(1, seed=4)[0]][:ds.max_tokens]
    chunks = [set(ds.draw_indices(300, seed=4, offset=300 * i).tolist()) for i in range(ds.size // 300)]
    assert len(set().union(*chunks)) == 300 * len(chunks)  # successive fresh draws never repeat a document
    assert not set(ds.draw_indices(ds.size, seed=4).tolist()) & set(ds.eval_indices(ds.heldout_size, seed=0).tolist())
    with pytest.raises(DatasetError, match="fresh-real needs"):
        ds.draw(10, seed=4, offset=ds.size - 5)


def test_text_folder_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph here\n\nsecond one\nstill second\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n\n" + json.dumps({"text": "more"}) + "\n")
    ds = _dataset("text", root=str(tmp_path), heldout=1)
    assert sorted(ds.documents) == sorted(["first paragraph here", "second one\nstill second", "from jsonl", "more"])
    lines = _dataset("text", root=str(tmp_path), split="line", heldout=1)
    assert "still second" in lines.documents


def test_hugging_face_datasets_folder(tmp_path):
    """A folder as ``datasets.DatasetDict.save_to_disk`` writes it (Arrow IPC stream files + state.json)."""
    import pyarrow as pa

    root = tmp_path / "hf"
    for split, texts in {"train": ["alpha beta", "", "gamma delta", "epsilon"], "test": ["zeta"]}.items():
        (root / split).mkdir(parents=True)
        table = pa.table({"text": texts})
        with pa.OSFile(str(root / split / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        (root / split / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    ds = _dataset("text", root=str(root), heldout=1)
    assert ds.documents == ["alpha beta", "gamma delta", "epsilon"]
    with pytest.raises(DatasetError, match="hf_split"):
        _dataset("text", root=str(root), hf_split="validation")


@pytest.mark.parametrize("setup,message", [
    (lambda p: (p / "e.txt").write_text("  \n"), "empty text file"),
    (lambda p: (p / "bad.txt").write_bytes(b"ok\xff\xfe"), "not UTF-8"),
    (lambda p: (p / "x.jsonl").write_text("{not json}\n"), "not JSON"),
    (lambda p: (p / "x.jsonl").write_text('{"body": "no text field"}\n'), "string 'text' field"),
    (lambda p: (p / "note.md").write_text("markdown only"), "no .txt or .jsonl"),
    (lambda p: (p / "one.txt").write_text("a single document"), "1 document"),
])
def test_bad_corpora_are_one_line_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DatasetError, match=message) as info:
        _dataset("text", root=str(tmp_path))
    assert "\n" not in str(info.value)


def test_synthetic_sources_have_the_true_marginal():
    from scipy.stats import chisquare

    for ds in (_dataset("zipf-text", vocab_size=8, max_tokens=6), _dataset("markov-text", vocab_size=5, max_tokens=6)):
        x = ds.draw(3000, seed=1).x
        assert (x >= 0).all() and x.shape == (3000, 6)
        p = ds.true_unigram()
        for col in (0, 5):  # every position has the true marginal (the chain starts stationary)
            counts = np.bincount(x[:, col], minlength=len(p))
            assert chisquare(counts, 3000 * p).pvalue > 1e-4
    markov = _dataset("markov-text", vocab_size=5, max_tokens=6)
    pi = markov.true_unigram()
    np.testing.assert_allclose(pi @ markov.transition, pi, atol=1e-12)


# ------------------------------------------------------------------------------ validate: exit 2

def _spec(**over):
    spec = {"name": "t", "dataset": {"name": "pydoc-text"}, "generator": {"name": "ngram", "order": 2},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 100, "n_synthetic": 100},
            "metrics": {"n_eval": 50}}
    for key, value in over.items():
        replace = not isinstance(value, dict) or (key in ("dataset", "generator") and "name" in value)
        spec[key] = value if replace else {**spec[key], **value}
    return spec


@pytest.mark.parametrize("over,message", [
    ({"loop": {"scheme": "fresh-real", "generations": 50, "n_real": 100}}, "loop.n_real: the loop draws 5000 real"),
    ({"metrics": {"n_eval": 1000}}, "metrics.n_eval: metrics want 1000 held-out documents"),
    ({"metrics": {"n_eval": 50, "names": ["w2"]}}, "metrics.names: 'w2' not a metric of tokens data"),  # fid is (text-lm)
    ({"dataset": {"tokenizer": "wordpiece"}}, "dataset.tokenizer"),
    ({"generator": {"name": "gaussian"}}, "does not handle tokens data"),
    ({"dataset": {"name": "gaussian", "dim": 2}}, "does not handle vector data"),
    ({"generator": {"name": "gpt", "block_size": 64}}, "generator.block_size: 64 positions cannot take the data's context of 128"),
    ({"generator": {"name": "gpt", "n_embd": 30, "n_head": 4}}, "generator.n_head"),
])
def test_bad_text_specs_fail_validation(cli, write_spec, over, message):
    code, out, err = cli("validate", write_spec(_spec(**over)))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_good_text_spec_validates(cli, write_spec):
    code, out, err = cli("validate", write_spec(_spec(metrics={"n_eval": 50, "names": ["perplexity", "self_bleu"]})))
    assert code == 0, err


# ------------------------------------------------------------------------------ runs

def _run_config(**over):
    return build_spec(_spec(**over)).runs[0].config


def test_run_folder_decodes_its_samples_and_resumes_exactly(tmp_path):
    config = _run_config(loop={"generations": 3})
    loop = Loop(config, tmp_path / "run")
    loop.run(until=2)
    store = RunStore(tmp_path / "run")
    tok = load_tokenizer(store)  # the run folder alone decodes what it holds
    texts = tok.decode_batch(store.samples(2).x)
    assert len(texts) == 100 and all(isinstance(t, str) for t in texts) and any(texts)
    Loop(config, tmp_path / "run").run()  # resume
    fresh = tmp_path / "fresh"
    Loop(config, fresh).run()
    for t in (1, 2, 3):
        # exact: integer token ids; same path, resume vs fresh on the same machine
        np.testing.assert_array_equal(store.samples(t).x, RunStore(fresh).samples(t).x)
        assert store.record(t)["metrics"] == RunStore(fresh).record(t)["metrics"]
    metrics = store.record(3)["metrics"]
    assert {"perplexity", "distinct_2", "self_bleu", "tail_mass", "model_entropy"} <= set(metrics)
    assert store.record(1)["metadata"]["tokenizer"] == "char"


def test_resume_with_another_tokenizer_is_refused(tmp_path):
    config = _run_config()
    Loop(config, tmp_path / "run").run(until=1)
    path = tmp_path / "run" / "tokenizer.json"
    path.write_text(CharTokenizer("abc").to_json())
    with pytest.raises(MadlabError, match="another tokenizer"):
        Loop(config, tmp_path / "run").run()


def test_cli_run_on_synthetic_source_reports_truth_distances(cli, write_spec, tmp_path):
    spec = _spec(dataset={"name": "zipf-text", "vocab_size": 30, "max_tokens": 8},
                 generator={"name": "ngram", "order": 1}, metrics={"n_eval": 100})
    out = tmp_path / "out"
    code, _, err = cli("run", write_spec(spec), "--out", out, "--no-ray")
    assert code == 0, err
    table = pd.read_parquet(out / "metrics.parquet")
    wide = table.pivot_table(index="generation", columns="metric", values="value")
    assert {"tv_truth", "kl_truth", "model_tv_truth", "model_kl_truth", "perplexity"} <= set(wide.columns)
    assert (wide["model_tv_truth"] > 0).all() and (wide["model_tv_truth"] < 1).all()


def _folder_spec(root, **dataset):
    return _spec(dataset={"name": "text", "root": str(root), "split": "line", "max_tokens": 16, "heldout": 10, **dataset},
                 generator={"name": "ngram", "order": 2}, loop={"generations": 2, "n_real": 20, "n_synthetic": 20},
                 metrics={"n_eval": 10, "k": 3})


@pytest.mark.parametrize("command", ["validate", "run"])
def test_resume_over_a_changed_corpus_is_one_line_exit_2_before_anything_runs(cli, write_spec, tmp_path, command):
    """The corpus files change under the same config (a new character appears): the stored
    tokenizer.json differs from what the config builds now. Refused at validate --out / run start."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("\n".join(f"the cat sat on mat {i}" for i in range(60)))
    spec = write_spec(_folder_spec(root))
    out = tmp_path / "out"
    code, _, err = cli("run", spec, "--out", out, "--no-ray")
    assert code == 0, err
    code, stdout, err = cli("validate", spec, "--out", out)
    assert code == 0 and "resumable" in stdout, err
    (root / "a.txt").write_text("\n".join(f"the dog sat on mat {i}" for i in range(60)))  # new letters
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    args = ("--out", out) + (("--no-ray",) if command == "run" else ())
    code, _, err = cli(command, spec, *args)
    assert code == 2 and err.count("\n") == 1 and "tokenizer.json" in err and "another tokenizer" in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing written
