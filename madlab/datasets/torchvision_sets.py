"""The image datasets of the follow-up papers, through torchvision's dataset classes.

``cifar10``, ``cifar100`` (Bertrand et al., SIMS, Shi et al.), ``fashion-mnist``, ``svhn`` and
``celeba``: each is read by its torchvision class from ``root`` (default
``$MADLAB_CACHE/<name>``), in the layout torchvision downloads (``download: true`` fetches it on a
machine with network, with torchvision's own checksums). The training split is the training pool,
the test split the held-out reference set (``eval_set``) that no training draw touches.
Features: Inception through torch-fidelity (its weights, or ``metrics.weights_path``; validation
states the reason when neither is at hand), or ``metrics.extractor: dinov2-vitl14`` with local weights.

A missing ``root``, a missing or corrupt file: one line naming the dataset and the folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from madlab.core.errors import DatasetError
from madlab.core.files import cache_root
from madlab.datasets.images import ImageDataset, center_square
from madlab.plugins.generator import Params

#: what a library raises over a missing or damaged file: torchvision's md5 check RuntimeError, a truncated
#: pickle EOFError / UnpicklingError, scipy's MatReadError (an Exception of its own), OSError, ValueError...
#: any of them is the file's fault here, and becomes one line naming the split and the folder
_READ_ERRORS = (Exception,)


class TorchvisionImages(ImageDataset):
    """A torchvision dataset held in memory as uint8 (n, C, H, W) with integer labels."""

    #: the torchvision.datasets class, and what ``root`` must hold (for the error message)
    torchvision_class: ClassVar[str]
    layout: ClassVar[str]
    classes: ClassVar[int | None] = 10

    class Params(Params):
        root: str | None = None
        download: bool = False

    def __init__(self, params):
        super().__init__(params)
        self.folder = Path(params.root or cache_root() / self.name).expanduser()
        if not params.download and not self.folder.is_dir():
            raise DatasetError(f"{self.name}: dataset.root {self.folder} does not exist; put {self.layout} there, "
                               f"or set dataset.download: true on a machine with network")
        self._images, self._labels = self._split_arrays(self._open(True))
        self._test = self._split_arrays(self._open(False))
        self._pool = len(self._images)

    def _open(self, train: bool):
        # optional at import time: torchvision is a madlab dependency, but loading it costs a second
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.torchvision_class)
        try:
            return cls(str(self.folder), **self._split_args(train), download=self.params.download)
        except _READ_ERRORS as exc:
            reason = (str(exc).strip().splitlines() or [""])[0]
            raise DatasetError(f"{self.name}: cannot read the {'train' if train else 'test'} split under "
                               f"{self.folder} ({type(exc).__name__}: {reason}); it should hold {self.layout}") from None

    def _split_args(self, train: bool) -> dict:
        return {"train": train}

    def _split_arrays(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (n, C, H, W) pixels and int64 labels of a torchvision dataset object."""
        data = np.asarray(dataset.data)
        pixels = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)  # (n,H,W) grey or (n,H,W,C)
        return np.ascontiguousarray(pixels, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64)

    @property
    def shape(self):
        return tuple(self._images.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return self.classes

    def _pixels(self, index):
        return self._images[index]

    def _test_split(self):
        return self._test


class CIFAR10(TorchvisionImages):
    """CIFAR-10: 50k training and 10k test 32x32 RGB images, 10 classes."""

    name = "cifar10"
    torchvision_class = "CIFAR10"
    layout = "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)"


class CIFAR100(TorchvisionImages):
    """CIFAR-100: 50k training and 10k test 32x32 RGB images, 100 fine classes."""

    name = "cifar100"
    torchvision_class = "CIFAR100"
    layout = "cifar-100-python/ (train, test, meta)"
    classes = 100


class FashionMNIST(TorchvisionImages):
    """Fashion-MNIST: 60k training and 10k test 28x28 greyscale images, 10 classes."""

    name = "fashion-mnist"
    torchvision_class = "FashionMNIST"
    layout = "FashionMNIST/raw/ (the four uncompressed IDX files)"


class SVHN(TorchvisionImages):
    """SVHN (cropped digits): 73,257 training and 26,032 test 32x32 RGB images, 10 classes."""

    name = "svhn"
    torchvision_class = "SVHN"
    layout = "train_32x32.mat and test_32x32.mat"

    def _split_args(self, train: bool) -> dict:
        return {"split": "train" if train else "test"}

    def _split_arrays(self, dataset):
        return np.ascontiguousarray(dataset.data, dtype=np.uint8), np.asarray(dataset.labels, dtype=np.int64)


class LazyImages:
    """Images as a read-only array of uint8 (n, *shape): ``decode(j)`` on first access, then kept
    (``celeba``'s 200k files, the encoded images of a Hugging Face folder)."""

    def __init__(self, count: int, decode, shape: tuple[int, ...]):
        self.count, self.decode, self.shape = count, decode, shape
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index) -> np.ndarray:
        out = np.empty((len(index), *self.shape), dtype=np.uint8)
        for i, j in enumerate(np.asarray(index).tolist()):
            if j not in self._decoded:
                self._decoded[j] = self.decode(j)
            out[i] = self._decoded[j]
        return out


class CelebA(TorchvisionImages):
    """CelebA (aligned faces): 162,770 training and 19,962 test images, centre-cropped to a square
    and resized to ``resolution`` (default 64, as the follow-up papers use); no class labels.
    Images are decoded when first drawn (the full set is 200k files)."""

    name = "celeba"
    torchvision_class = "CelebA"
    layout = ("celeba/ (img_align_celeba/, list_eval_partition.txt, identity_CelebA.txt, list_attr_celeba.txt, "
              "list_bbox_celeba.txt, list_landmarks_align_celeba.txt)")
    classes = None

    class Params(TorchvisionImages.Params):
        resolution: int = Field(64, ge=4, le=1024)

    def _split_args(self, train: bool) -> dict:
        return {"split": "train" if train else "test", "target_type": []}

    def _split_arrays(self, dataset):
        folder = Path(dataset.root) / dataset.base_folder / "img_align_celeba"
        files = [folder / name for name in dataset.filename]
        missing = next((f for f in files if not f.is_file()), None)
        if missing is not None:
            raise DatasetError(f"celeba: {missing} is listed in list_eval_partition.txt but missing")
        r = self.params.resolution
        return LazyImages(len(files), lambda j: center_square(files[j], r), (3, r, r)), None

    @property
    def shape(self):
        r = self.params.resolution
        return (3, r, r)
