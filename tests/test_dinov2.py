"""DINOv2 extractors: local weights only (official or timm format), dgm-eval preprocessing, the whole
metric path with randomly initialised weights, caching by weights hash, and a clean exit 2 without
weights. No test downloads anything: the weights files are random ViTs written here.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from madlab.errors import ConfigError, MadlabError
from madlab.features import EXTRACTORS, create_extractor, extract_features, extractor_identity
from madlab.features import feature_extractor_dinov2 as D

pytestmark = pytest.mark.gpu
NAME = "dinov2-vitb14"
#: the default suite runs the same timm DINOv2 code at 2 blocks of width 96 (ViT-B/14 takes seconds per
#: image on a loaded CPU); the slow tests load the real ViT-B/14 and ViT-L/14 shapes
TINY = {"depth": 2, "embed_dim": 96, "num_heads": 2}


@pytest.fixture(autouse=True)
def tiny_vit(request, monkeypatch):
    if "real_size" not in request.keywords:
        monkeypatch.setitem(D.MODEL_OVERRIDES, NAME, TINY)


def random_official_and_timm_files(folder, name=NAME, seed=0):
    """The same random ViT saved as the official checkpoint (518-pixel position embedding plus
    mask_token, .pth) and as timm's model.safetensors (fp16 to keep the files small)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(D.ARCHITECTURES[name][0], pretrained=False, num_classes=0,  # img_size 518
                              **D.MODEL_OVERRIDES.get(name, {}))
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    timm_file = folder / f"{name}-{seed}.safetensors"
    save_file(state, str(timm_file))
    official = folder / f"{name}-{seed}_pretrain.pth"
    torch.save({**state, "mask_token": torch.zeros(1, state["cls_token"].shape[-1], dtype=torch.half)}, official)
    return official, timm_file


@pytest.fixture
def weights(tmp_path, tiny_vit):
    return random_official_and_timm_files(tmp_path)


def digits(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def test_registered_and_preprocessing_is_dgm_eval_s():
    assert EXTRACTORS["dinov2-vitl14"] is EXTRACTORS["dinov2-vitb14"] is D.FeatureExtractorDINOv2
    grey = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    x = D.preprocess(grey)
    assert x.shape == (2, 3, 224, 224)
    white = (1 - torch.tensor(D.IMAGENET_MEAN)) / torch.tensor(D.IMAGENET_STD)
    assert torch.allclose(x[0, :, 100, 100], white, atol=1e-5)  # grey replicated, ImageNet-normalised
    ramp = torch.arange(28, dtype=torch.uint8).mul(9).expand(1, 3, 28, 28)
    y = D.preprocess(ramp) * torch.tensor(D.IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(D.IMAGENET_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-3)  # back on the 8-bit grid, as PIL's resize output
    assert (y[0, 0, 0, 1:] >= y[0, 0, 0, :-1] - 1e-6).all()  # a ramp stays monotone through the bicubic resize
    with pytest.raises(MadlabError, match="dinov2"):
        D.preprocess(torch.zeros(2, 2, 28, 28))


def test_official_and_timm_files_give_the_same_features(weights):
    official, timm_file = weights
    a = create_extractor(NAME, weights_path=str(official))
    b = create_extractor(NAME, weights_path=str(timm_file))
    images = digits(4, 1)
    fa, fb = extract_features(a, images), extract_features(b, images)
    assert fa.shape == (4, TINY["embed_dim"]) and fa.dtype == np.float32 and np.isfinite(fa).all()
    np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-5)
    assert not np.allclose(fa[0], fa[1])  # the features depend on the image
    ident = extractor_identity(b)
    assert ident["extractor"] == NAME and ident["feature_layer"] == "cls"
    assert ident["extractor_hash"] == hashlib.sha256(timm_file.read_bytes()).hexdigest()[:16]


def test_bad_or_missing_weights_fail_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics\.weights_path: dinov2-vitl14 needs a local weights file"):
        create_extractor("dinov2-vitl14")
    with pytest.raises(ConfigError, match=r"metrics\.weights_path: .*does not exist"):
        create_extractor(NAME, weights_path=str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(MadlabError, match=r"metrics\.weights_path: .* is not dinov2-vitb14 weights"):
        create_extractor(NAME, weights_path=str(garbage))
    wrong = tmp_path / "lenet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(MadlabError, match=r"is not dinov2-vitb14 weights"):
        create_extractor(NAME, weights_path=str(wrong))


def test_whole_metric_path_with_random_weights_caches_by_weights_hash(weights, tmp_path, monkeypatch):
    from madlab.config import MetricsConfig
    from madlab.metrics.images import ImageEvaluator
    from madlab.samples import Samples

    official, timm_file = weights
    real = Samples(digits(12, 2).astype(np.float32) / 127.5 - 1)
    fake = Samples(digits(12, 3).astype(np.float32) / 127.5 - 1)

    class Dataset:
        name = "mnist5k"

    calls = []
    original = ImageEvaluator._features
    monkeypatch.setattr(ImageEvaluator, "_features", lambda self, x: calls.append(len(x)) or original(self, x))
    cfg = MetricsConfig(k=2, extractor=NAME, weights_path=str(timm_file), kid_subset_size=6)
    first = ImageEvaluator(Dataset(), cfg, real, cache_dir=str(tmp_path))
    values = first(fake)
    assert set(values) == {"fid", "kid", "precision", "recall", "density", "coverage", "vendi"}
    assert all(np.isfinite(v) for v in values.values()) and values["fid"] > 0
    assert first.metadata["extractor"] == NAME
    cached = sorted(p.name for p in tmp_path.glob("real-*.npz"))
    assert cached == [f"real-{NAME}-{first.metadata['extractor_hash']}-{first.metadata['real_digest']}.npz"]
    assert calls == [12, 12]
    calls.clear()
    second = ImageEvaluator(Dataset(), cfg, real, cache_dir=str(tmp_path))  # same weights: real set from cache
    # exact: same path — real statistics read back from the cache are the stored bits
    assert calls == [] and second(fake) == values and calls == [12]

    other, _ = random_official_and_timm_files(tmp_path, seed=1)  # other weights: their own cache entry
    calls.clear()
    third = ImageEvaluator(Dataset(), MetricsConfig(k=2, extractor=NAME, weights_path=str(other), kid_subset_size=6),
                           real, cache_dir=str(tmp_path))
    assert calls == [12] and third.metadata["extractor_hash"] != first.metadata["extractor_hash"]
    assert len(list(tmp_path.glob("real-*.npz"))) == 2
    assert third(fake)["fid"] != values["fid"]


def test_validate_without_weights_exits_2_before_anything_runs(write_spec, cli, tmp_path):
    spec = {"name": "d", "dataset": {"name": "mnist5k"}, "generator": {"name": "gan"},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 100, "n_synthetic": 100},
            "metrics": {"extractor": "dinov2-vitl14"}}
    path = write_spec(spec)
    code, out, err = cli("validate", path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "metrics.weights_path: the DINOv2 extractors need a local weights file" in err
    code, _, err = cli("run", path, "--out", tmp_path / "out", "--no-ray")
    assert code == 2 and not (tmp_path / "out").exists()
    spec["metrics"]["weights_path"] = str(tmp_path / "missing.pth")
    code, _, err = cli("validate", write_spec(spec))
    assert code == 2 and "missing.pth does not exist" in err
    spec["metrics"] = {"extractor": "dinov3"}
    code, _, err = cli("validate", write_spec(spec))
    assert code == 2 and "metrics.extractor: unknown feature extractor 'dinov3'" in err
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")  # validate checks presence only (loading 1.2 GB is the run's job)
    spec["metrics"] = {"extractor": "dinov2-vitl14", "weights_path": str(weights)}
    code, out, _ = cli("validate", write_spec(spec))
    assert code == 0 and out.startswith("ok:")


@pytest.mark.slow
@pytest.mark.real_size
@pytest.mark.parametrize("name,dim", [("dinov2-vitb14", 768), ("dinov2-vitl14", 1024)])
def test_real_architectures_load_both_formats(tmp_path, name, dim):
    official, timm_file = random_official_and_timm_files(tmp_path, name=name)
    images = digits(2, 0)
    a = extract_features(create_extractor(name, weights_path=str(official)), images)
    b = extract_features(create_extractor(name, weights_path=str(timm_file)), images)
    assert a.shape == (2, dim)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
