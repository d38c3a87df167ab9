"""Feature extractors: deterministic LeNet training, the weights cache and record, registration,
Inception's offline behaviour (never a download attempt here)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from madlab.errors import ConfigError, MadlabError
from madlab.features import create_extractor, default_extractor, extract_features, extractor_identity
from madlab.features import feature_extractor_lenet as lenet

SHARED_MNIST = Path(os.environ.get("MADLAB_MNIST_TEST_DIR")
                    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist")
HAS_T10K = (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MADLAB_MNIST_TEST_DIR", str(SHARED_MNIST) if HAS_T10K else str(tmp_path / "none"))
    return tmp_path / "cache"


def digits(n=400):
    from madlab.datasets.images import load_mnist5k

    x, y = load_mnist5k()
    return x[:: 5000 // n][:n], y[:: 5000 // n][:n]


@pytest.mark.fp_exact
def test_lenet_training_is_deterministic():
    x, y = digits()
    a = lenet.train_lenet(x, y, epochs=1, seed=3).state_dict()
    b = lenet.train_lenet(x, y, epochs=1, seed=3).state_dict()
    c = lenet.train_lenet(x, y, epochs=1, seed=4).state_dict()
    # exact: same path — the same training, seed and single thread twice in one process
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


#: A recipe that trains in a few seconds (every 10th digit, one epoch): the real code path, tiny data.
QUICK = {"epochs": 1, "train_every": 10}


def test_weights_are_cached_with_hash_and_heldout_record(cache):
    path = lenet.ensure_lenet_weights(recipe=QUICK)
    assert path.parent == cache / "extractors" and path.name.startswith(f"lenet-mnist-v{lenet.VERSION}-")
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == lenet.file_sha256(path)
    assert record["recipe"]["train_set"] == "mnist5k" and record["recipe"]["epochs"] == 1
    assert record["pinned_env"] == lenet.PINNED_ENV and record["trained_by_pid"] == os.getpid()
    if HAS_T10K:
        assert record["heldout_set"].startswith("MNIST t10k (10000 digits")
        assert 0.1 < record["heldout_accuracy"] <= 1.0
    else:
        assert record["heldout_accuracy"] is None
    mtime = path.stat().st_mtime_ns
    assert lenet.ensure_lenet_weights(recipe=QUICK) == path and path.stat().st_mtime_ns == mtime  # reused
    ext = create_extractor("lenet-mnist", weights_path=str(path))
    ident = extractor_identity(ext)
    assert ident == {"extractor": "lenet-mnist", "extractor_hash": record["sha256"][:16], "feature_layer": "128"}
    with pytest.raises(MadlabError, match="unknown recipe key"):
        lenet.ensure_lenet_weights(recipe={"lr": 1.0})


_WORKER = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from madlab.features import feature_extractor_lenet as lenet
path = lenet.ensure_lenet_weights(recipe={"epochs": 1, "train_every": 10})
record = json.loads(path.with_suffix(".json").read_text())
print(json.dumps({"sha256": lenet.file_sha256(path), "recorded": record["sha256"], "trainer": record["trained_by_pid"]}))
"""


def _workers(env, threads):
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(t)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for t in threads]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def _cold_env(tmp_path, name):
    return {**os.environ, "MADLAB_CACHE": str(tmp_path / name), "MADLAB_MNIST_TEST_DIR": str(tmp_path / "none")}


def test_concurrent_workers_on_a_cold_cache_train_once_and_agree(tmp_path):
    """Two processes start together on an empty MADLAB_CACHE (as two Ray workers of one sweep do):
    one trains, the other waits on the lock and reads the same file."""
    first, second = _workers(_cold_env(tmp_path, "a"), [1, 2])
    assert first["sha256"] == second["sha256"] == first["recorded"]
    assert first["trainer"] == second["trainer"]  # the record was written once, by one of them


@pytest.mark.fp_exact
@pytest.mark.slow
def test_weights_do_not_depend_on_the_callers_thread_count(tmp_path):
    """Two cold caches filled by processes running 1 and 4 torch threads hold the same bytes."""
    (one,) = _workers(_cold_env(tmp_path, "a"), [1])
    (four,) = _workers(_cold_env(tmp_path, "b"), [4])
    assert one["sha256"] == four["sha256"]


@pytest.mark.fp_exact
def test_features_and_input_conventions(cache):
    ext = create_extractor("lenet-mnist", weights_path=str(lenet.ensure_lenet_weights(recipe=QUICK)))
    x, _ = digits(20)
    f_uint8 = extract_features(ext, x)
    f_float = extract_features(ext, x.astype(np.float32) / 127.5 - 1)
    f_rgb = extract_features(ext, np.repeat(x, 3, axis=1))
    assert f_uint8.shape == (20, lenet.FEATURE_DIM) and f_uint8.dtype == np.float32
    # exact: uint8 -> x / 127.5 - 1 is correctly rounded in numpy and torch alike, so both inputs are the same bits
    np.testing.assert_array_equal(f_uint8, f_float)
    np.testing.assert_allclose(f_uint8, f_rgb, rtol=1e-5, atol=1e-5)
    with pytest.raises(MadlabError, match="28x28"):
        extract_features(ext, np.zeros((2, 1, 32, 32), np.uint8))


def test_registered_in_torch_fidelity():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert FEATURE_EXTRACTORS_REGISTRY["lenet-mnist"] is lenet.FeatureExtractorLeNet
    assert "inception" in FEATURE_EXTRACTORS_REGISTRY
    assert default_extractor("mnist5k") == default_extractor("mnist") == "lenet-mnist"
    assert default_extractor("ffhq") == "inception"
    with pytest.raises(ConfigError, match="unknown feature extractor"):
        create_extractor("alexnet-2012")


def test_bad_lenet_weights_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(MadlabError, match=r"metrics\.weights_path: .*not a lenet-mnist weights file"):
        create_extractor("lenet-mnist", weights_path=str(bad))


@pytest.fixture
def offline_inception(tmp_path, monkeypatch):
    """No cached Inception weights and no network: madlab must refuse at once, never download."""
    monkeypatch.setenv("MADLAB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setattr(tfi, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("attempted to download Inception weights"))
    return tmp_path


def test_inception_offline_without_weights_fails_fast(offline_inception):
    start = time.perf_counter()
    with pytest.raises(MadlabError, match=r"metrics\.weights_path"):
        create_extractor("inception")
    assert time.perf_counter() - start < 5
    with pytest.raises(MadlabError, match=r"metrics\.weights_path: .*does not exist"):
        create_extractor("inception", weights_path=str(offline_inception / "nope.pth"))
    garbage = offline_inception / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(MadlabError, match=r"metrics\.weights_path: cannot load"):
        create_extractor("inception", weights_path=str(garbage))


def test_inception_with_local_weights(offline_inception, monkeypatch):
    """Random weights in torch-fidelity's layout stand in for the real file (not downloadable here)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with monkeypatch.context() as m:
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        m.setattr(tfi.torch, "load", lambda *a, **k: {})
        state = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
        state = state.state_dict()
    path = offline_inception / "inception.pth"
    torch.save(state, path)
    ext = create_extractor("inception", weights_path=str(path))
    grey = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    feats = extract_features(ext, grey)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    ident = extractor_identity(ext)
    assert ident["extractor"] == "inception" and ident["extractor_hash"] == lenet.file_sha256(path)[:16]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_T10K, reason="MNIST t10k test split not available")
def test_pinned_lenet_heldout_accuracy(cache):
    """The real recipe (about a minute): at least 98% on MNIST's t10k, trained on mnist5k only."""
    path = lenet.ensure_lenet_weights()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["heldout_accuracy"] >= 0.98
    assert record["train_accuracy"] >= 0.98
