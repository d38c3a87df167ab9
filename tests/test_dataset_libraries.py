"""The follow-up papers' datasets through torchvision's classes, on small files written here in
each library's own on-disk format (nothing is downloaded).

The files are too small to match the MD5 sums torchvision checks for the published archives, so
those checks are switched off (``check_integrity`` of each torchvision module answers True);
everything else is torchvision's own reading code.
"""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from madlab.specs import build_spec
from madlab.datasets import open_dataset
from madlab.core.errors import DatasetError
from conftest import gaussian_spec

RNG = np.random.default_rng(0)


@pytest.fixture
def no_md5(monkeypatch):
    import torchvision.datasets.celeba as celeba
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    for module in (cifar, svhn, celeba):
        monkeypatch.setattr(module, "check_integrity", lambda *args, **kwargs: True)


def write_cifar(root, n_train=6, n_test=4, hundred=False):
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    key = "fine_labels" if hundred else "labels"
    images = {}

    def batch(name, n):
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 100 if hundred else 10, n).tolist()
        images[name] = (data, labels)
        (folder / name).write_bytes(pickle.dumps({"data": data, key: labels}))

    if hundred:
        batch("train", n_train)
        batch("test", n_test)
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    else:
        for i in range(1, 6):
            batch(f"data_batch_{i}", n_train // 5 + (i == 1) * (n_train % 5))
        batch("test_batch", n_test)
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return images


def write_idx(path, array):
    dims = array.shape
    path.write_bytes(struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes())


def write_fashion(root, n_train=7, n_test=3):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images, labels = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8), RNG.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


def write_svhn(root, n_train=5, n_test=3):
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = RNG.integers(1, 11, (n, 1)).astype(np.uint8)  # SVHN's files call the digit 0 "10"
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = (x, y)
    return arrays


def write_celeba(root, splits=(0, 0, 0, 2, 2)):
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(splits))]
    for name in names:
        Image.fromarray(RNG.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / "img_align_celeba" / name)
    lines = {"list_eval_partition.txt": [f"{n} {s}" for n, s in zip(names, splits)],
             "identity_CelebA.txt": [f"{n} {i}" for i, n in enumerate(names)],
             "list_attr_celeba.txt": [str(len(names)), "Smiling Young"] + [f"{n} 1 -1" for n in names],
             "list_bbox_celeba.txt": [str(len(names)), "image_id x_1 y_1 width height"] + [f"{n} 1 2 3 4" for n in names],
             "list_landmarks_align_celeba.txt": [str(len(names)), "lefteye_x lefteye_y"] + [f"{n} 1 2" for n in names]}
    for name, content in lines.items():
        (folder / name).write_text("\n".join(content) + "\n")
    return names


def test_cifar10_train_pool_and_test_split(tmp_path, no_md5):
    images = write_cifar(tmp_path)
    data = open_dataset({"name": "cifar10", "root": str(tmp_path)})
    assert data.shape == (3, 32, 32) and data.size == 6 and data.num_classes == 10
    train = np.concatenate([images[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    drawn = data.draw(6, seed=0)
    # the loop's pixel map of the same bytes (madlab.core.image): compared on the 8-bit grid it came from
    from madlab.core.image import to_uint8
    assert sorted(map(bytes, to_uint8(drawn.x))) == sorted(map(bytes, train))
    test = images["test_batch"][0].reshape(-1, 3, 32, 32)
    assert sorted(map(bytes, to_uint8(data.eval_set(4, seed=0).x))) == sorted(map(bytes, test))


def test_cifar100_fashion_svhn_read_through_their_classes(tmp_path, no_md5):
    from madlab.core.image import to_uint8

    write_cifar(tmp_path / "c100", hundred=True)
    c100 = open_dataset({"name": "cifar100", "root": str(tmp_path / "c100")})
    assert c100.num_classes == 100 and c100.size == 6 and c100.eval_set(4, seed=1).x.shape == (4, 3, 32, 32)

    arrays = write_fashion(tmp_path / "fm")
    fashion = open_dataset({"name": "fashion-mnist", "root": str(tmp_path / "fm")})
    assert fashion.shape == (1, 28, 28) and fashion.size == 7
    drawn = fashion.draw(7, seed=0)
    order = np.argsort([bytes(x) for x in to_uint8(drawn.x)[:, 0]])
    want = np.argsort([bytes(x) for x in arrays["train"][0]])
    assert np.array_equal(to_uint8(drawn.x)[order, 0], arrays["train"][0][want])
    assert np.array_equal(drawn.y[order], arrays["train"][1][want].astype(np.int64))

    arrays = write_svhn(tmp_path / "svhn")
    svhn = open_dataset({"name": "svhn", "root": str(tmp_path / "svhn")})
    assert svhn.shape == (3, 32, 32) and svhn.size == 5
    labels = arrays["test"][1].ravel().astype(np.int64) % 10  # "10" is the digit 0
    assert sorted(svhn.eval_set(3, seed=0).y.tolist()) == sorted(labels.tolist())


def test_celeba_decodes_its_split_at_the_resolution(tmp_path, no_md5):
    write_celeba(tmp_path)
    data = open_dataset({"name": "celeba", "root": str(tmp_path), "resolution": 16})
    assert data.shape == (3, 16, 16) and data.size == 3 and data.num_classes is None
    assert data.draw(3, seed=0).x.shape == (3, 3, 16, 16) and data.eval_set(2, seed=0).x.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist", "svhn", "celeba"])
def test_a_missing_root_is_one_line(tmp_path, name):
    with pytest.raises(DatasetError) as info:
        open_dataset({"name": name, "root": str(tmp_path / "absent")})
    message = str(info.value)
    assert message.startswith(f"{name}: dataset.root {tmp_path}/absent does not exist") and "\n" not in message


def test_a_corrupt_file_is_one_line(tmp_path, no_md5):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(DatasetError) as info:
        open_dataset({"name": "cifar10", "root": str(tmp_path)})
    assert "cannot read the train split" in str(info.value) and "\n" not in str(info.value)
    write_svhn(tmp_path / "svhn")
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="svhn: cannot read the test split"):
        open_dataset({"name": "svhn", "root": str(tmp_path / "svhn")})


def test_torchvision_checksums_catch_a_damaged_file(tmp_path):
    """With torchvision's own MD5 check on, files that are not the published ones are refused in one line."""
    write_cifar(tmp_path)
    with pytest.raises(DatasetError, match="cifar10: cannot read the train split .*RuntimeError"):
        open_dataset({"name": "cifar10", "root": str(tmp_path)})


def cifar_spec(tmp_path, **metrics) -> dict:
    write_cifar(tmp_path / "data", n_train=80, n_test=64)
    # 64 samples: the report's sample-embedding panel projects onto 50 principal components first
    spec = gaussian_spec(generations=2, n_real=64, n_synthetic=64)
    spec["dataset"] = {"name": "cifar10", "root": str(tmp_path / "data")}
    spec["generator"] = {"name": "gan", "preset": "cpu", "steps": 2, "batch_size": 8, "width": 8, "latent_dim": 8}
    spec["metrics"] = {"k": 2, "kid_subset_size": 4, **metrics}
    return spec


def test_validate_states_why_no_extractor_is_at_hand(tmp_path, no_md5, cli, write_spec, monkeypatch):
    from madlab.features import feature_extractor_inception as inception

    monkeypatch.setattr(inception, "cached_weights_path", lambda: tmp_path / "no-weights.pth")
    monkeypatch.setenv("MADLAB_OFFLINE", "1")
    code, _, stderr = cli("validate", write_spec(cifar_spec(tmp_path)))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "no Inception-v3 weights here and no network to fetch them" in stderr


def test_cifar10_runs_and_reports_from_local_files(tmp_path, no_md5, cli, write_spec, monkeypatch):
    """Two generations of a tiny GAN on CIFAR-10 files, scored with DINOv2 features from a local
    weights file (a random ViT of two blocks written here: the real one is 1.2 GB)."""
    from test_dinov2 import TINY, random_official_and_timm_files

    from madlab.features import feature_extractor_dinov2 as dinov2

    monkeypatch.setitem(dinov2.MODEL_OVERRIDES, "dinov2-vitb14", TINY)
    _, weights = random_official_and_timm_files(tmp_path)
    spec = write_spec(cifar_spec(tmp_path, extractor="dinov2-vitb14", weights_path=str(weights)))
    assert cli("validate", spec)[0] == 0
    out = tmp_path / "out"
    code, stdout, _ = cli("run", spec, "--out", out, "--no-ray")
    assert code == 0, stdout
    import pandas as pd

    table = pd.read_parquet(out / "metrics.parquet")
    assert set(table.dataset) == {"cifar10"} and sorted(table.generation.unique()) == [1, 2]
    assert {"fid", "precision", "recall"} <= set(table.metric) and table.value.notna().all()
    assert set(table.extractor) == {"dinov2-vitb14"}
    code, stdout, _ = cli("report", out)
    assert code == 0 and (out / "figures" / "index.html").is_file()


# ---------------------------------------------------------------------- Hugging Face save_to_disk folders


def save_hf(root, splits: dict[str, int], size=(12, 10), mode="RGB", dict_of_splits=True):
    """Small image datasets saved by `datasets` itself; returns {split: (uint8 arrays, labels)}."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    saved, parts = {}, {}
    for split, n in splits.items():
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        arrays = [RNG.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        labels = RNG.integers(0, 3, n).tolist()
        images = [Image.fromarray(a, mode=mode) for a in arrays]
        parts[split] = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
        saved[split] = (np.stack([a if a.ndim == 3 else a[..., None] for a in arrays]).transpose(0, 3, 1, 2), labels)
    if dict_of_splits:
        datasets.DatasetDict(parts).save_to_disk(str(root))
    else:
        parts["train"].save_to_disk(str(root))
    return saved


def test_hf_image_folder_train_and_test_splits(tmp_path):
    from madlab.core.image import to_uint8

    saved = save_hf(tmp_path / "hf", {"train": 6, "test": 4})
    data = open_dataset({"name": "hf-images", "root": str(tmp_path / "hf")})
    assert data.shape == (3, 10, 12) and data.size == 6 and data.num_classes == 3
    drawn = data.draw(6, seed=0)  # PNG is lossless: the saved pixels come back exactly
    got = sorted(zip(map(bytes, to_uint8(drawn.x)), drawn.y.tolist()))
    assert got == sorted(zip(map(bytes, saved["train"][0]), saved["train"][1]))
    test = data.eval_set(4, seed=0)
    assert sorted(map(bytes, to_uint8(test.x))) == sorted(map(bytes, saved["test"][0]))


def test_hf_image_folder_greyscale_resolution_and_single_split(tmp_path):
    save_hf(tmp_path / "grey", {"train": 5}, size=(16, 16), mode="L", dict_of_splits=False)
    data = open_dataset({"name": "hf-images", "root": str(tmp_path / "grey"), "resolution": 8, "holdout": 2})
    assert data.shape == (1, 8, 8) and data.size == 3 and data.eval_set(2, seed=0).x.shape == (2, 1, 8, 8)


@pytest.mark.parametrize("params, needle", [
    ({"root": "{tmp}/absent"}, "is not a folder"),
    ({"root": "{tmp}/hf", "split": "validation"}, "dataset.split 'validation' is not a split of"),
    ({"root": "{tmp}/hf", "image_field": "img"}, "has no column 'img'"),
    ({"root": "{tmp}"}, "is not a Hugging Face datasets folder"),
])
def test_hf_image_folder_errors_are_one_line(tmp_path, params, needle):
    save_hf(tmp_path / "hf", {"train": 3, "test": 2})
    params = {k: v.replace("{tmp}", str(tmp_path)) for k, v in params.items()}
    with pytest.raises(DatasetError) as info:
        open_dataset({"name": "hf-images", **params})
    assert needle in str(info.value) and "\n" not in str(info.value)
