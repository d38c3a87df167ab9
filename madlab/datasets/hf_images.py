"""Image datasets saved with Hugging Face ``datasets`` (``Dataset.save_to_disk`` /
``DatasetDict.save_to_disk``), read with pyarrow as the text kind reads its folders, so the
``datasets`` package is not needed to run on them.

``root`` is the saved folder; ``split`` names the training split of a DatasetDict (default
``train``) and ``eval_split`` the held-out reference (default ``test``; a missing one, or
``eval_split: null``, scores against the training pool as ``ffhq`` does, or against ``holdout``
images). ``image_field`` holds the images (the ``Image`` feature: encoded bytes), ``label_field``
optional class labels (a ``ClassLabel``). Images keep their size and mode (greyscale stays one
channel), or are centre-cropped and resized to ``resolution``.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from pydantic import Field

from madlab.core.errors import DatasetError
from madlab.datasets.hf_saved import read_saved_split
from madlab.datasets.images import ImageDataset
from madlab.datasets.torchvision_sets import LazyImages
from madlab.plugins.generator import Params


class HFImages(ImageDataset):
    """Images of a Hugging Face ``save_to_disk`` folder (see the module docstring)."""

    name = "hf-images"

    class Params(Params):
        root: str
        split: str = "train"
        eval_split: str | None = "test"
        image_field: str = "image"
        label_field: str | None = "label"
        resolution: int | None = Field(None, ge=4, le=4096)
        holdout: int = Field(0, ge=0)

    def __init__(self, params):
        super().__init__(params)
        self.root = Path(params.root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"hf-images: dataset.root {self.root} is not a folder")
        train = self._read_split(params.split, required=True)
        self._encoded, self._labels = train
        self._pool = len(self._encoded)
        self._shape, self._mode = self._first_image()
        self._images = LazyImages(self._pool, lambda j: self._decode(self._encoded[j]), self._shape)
        held = self._read_split(params.eval_split, required=False) if params.eval_split else None
        self._test = None if held is None else (
            LazyImages(len(held[0]), lambda j: self._decode(held[0][j]), self._shape), held[1])
        self._classes = self._count_classes(held)
        self._check_holdout()

    def _read_split(self, split: str, required: bool):
        columns = [self.params.image_field] + ([self.params.label_field] if self.params.label_field else [])
        table = read_saved_split(self.root, split, columns)
        if table is None:
            if required:
                raise DatasetError(f"hf-images: dataset.split {split!r} is not a split of {self.root}")
            return None
        encoded = [cell["bytes"] if isinstance(cell, dict) else cell for cell in table.column(0).to_pylist()]
        if not encoded or any(not isinstance(b, bytes) for b in encoded):
            raise DatasetError(f"hf-images: {self.root} split {split!r}: column {self.params.image_field!r} "
                               f"holds no embedded image bytes")
        labels = np.asarray(table.column(1).to_pylist(), dtype=np.int64) if len(columns) > 1 else None
        return encoded, labels

    def _first_image(self):
        from PIL import Image

        with Image.open(io.BytesIO(self._encoded[0])) as im:
            mode = "L" if im.mode in ("L", "1", "I;16") else "RGB"
            w, h = im.size
        channels = 1 if mode == "L" else 3
        r = self.params.resolution
        return ((channels, r, r) if r else (channels, h, w)), mode

    def _decode(self, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert(self._mode)
                if self.params.resolution:
                    w, h = im.size
                    s = min(w, h)
                    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                    im = im.resize((self.params.resolution,) * 2, Image.LANCZOS)
                array = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"hf-images: an image in {self.root} does not decode ({exc})") from None
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if array.shape != self._shape:
            raise DatasetError(f"hf-images: images of mixed sizes in {self.root} ({array.shape[1:]} vs "
                               f"{self._shape[1:]}); set dataset.resolution")
        return array

    def _count_classes(self, held) -> int | None:
        if self._labels is None:
            return None
        info = self.root / "dataset_info.json"
        if not info.is_file() and (self.root / self.params.split / "dataset_info.json").is_file():
            info = self.root / self.params.split / "dataset_info.json"
        try:
            names = json.loads(info.read_text())["features"][self.params.label_field]["names"]
            return len(names)
        except (OSError, ValueError, KeyError, TypeError):
            labels = self._labels if held is None or held[1] is None else np.concatenate([self._labels, held[1]])
            return int(labels.max()) + 1

    @property
    def shape(self):
        return self._shape

    @property
    def num_classes(self) -> int | None:
        return self._classes

    def _pixels(self, index):
        return self._images[index]

    def _test_split(self):
        return self._test
