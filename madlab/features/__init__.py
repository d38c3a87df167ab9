"""Pinned, versioned image feature extractors, registered in torch-fidelity's registry.

One file per extractor, as in torch-fidelity: ``feature_extractor_lenet.py`` (``lenet-mnist``,
trained locally on MNIST digits and cached), ``feature_extractor_inception.py``
(``inception``, torch-fidelity's Inception-v3 with an offline-safe weights lookup) and
``feature_extractor_dinov2.py`` (``dinov2-vitl14``, ``dinov2-vitb14``: timm's DINOv2 ViTs from a
local weights file, the features Stein et al. 2023 recommend). Importing this package registers them with :func:`torch_fidelity.register_feature_extractor`, so
``torch_fidelity.calculate_metrics(feature_extractor="lenet-mnist", ...)`` works too.

An extractor is identified by its name *and* the SHA-256 of its weights file
(:func:`extractor_identity`); the engine writes both next to every metric value.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache

import numpy as np
import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from madlab.core.errors import ConfigError, MadlabError
from madlab.core.image import to_uint8
from madlab.core.pinned import file_sha256
from madlab.features.feature_extractor_dinov2 import ARCHITECTURES as DINOV2, FeatureExtractorDINOv2
from madlab.features.feature_extractor_inception import FeatureExtractorInception
from madlab.features.feature_extractor_lenet import FeatureExtractorLeNet

EXTRACTORS = {"lenet-mnist": FeatureExtractorLeNet, "inception": FeatureExtractorInception,
              **{name: FeatureExtractorDINOv2 for name in DINOV2}}

for _name, _cls in EXTRACTORS.items():
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, _cls)


def default_extractor(dataset_name: str) -> str:
    """LeNet features for MNIST (as MAD), Inception for everything else (faces, user folders)."""
    return "lenet-mnist" if dataset_name.startswith("mnist") else "inception"


def _extractor_class(name: str):
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        raise ConfigError(f"metrics.extractor: unknown feature extractor {name!r} "
                          f"(madlab's: {', '.join(EXTRACTORS)}; torch-fidelity's registry: "
                          f"{', '.join(sorted(set(FEATURE_EXTRACTORS_REGISTRY) - set(EXTRACTORS)))})")
    return FEATURE_EXTRACTORS_REGISTRY[name]


def check_weights_file(weights_path) -> None:
    """ConfigError naming ``metrics.weights_path`` unless it is an existing, readable file."""
    path = os.path.expanduser(str(weights_path))
    if not os.path.isfile(path):
        raise ConfigError(f"metrics.weights_path: {path} does not exist or is not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(f"metrics.weights_path: {path} cannot be read ({exc.strerror})") from None


def check_extractor(name: str, weights_path: str | None = None) -> None:
    """The validate-time check of an extractor choice: the name is registered and its weights can be
    had (a given ``weights_path`` must be a readable file; an extractor class may add its own rule
    through a ``check_weights(weights_path)`` classmethod, e.g. Inception offline without weights)."""
    cls = _extractor_class(name)
    if weights_path is not None:
        check_weights_file(weights_path)
    hook = getattr(cls, "check_weights", None)
    if hook is not None:
        try:
            hook(weights_path)
        except MadlabError as exc:
            raise ConfigError(str(exc)) from None


def create_extractor(name: str, *, weights_path: str | None = None, device: str = "cpu"):
    """A ready, frozen torch-fidelity extractor emitting its FID feature layer only."""
    cls = _extractor_class(name)
    layer = cls.get_default_feature_layer_for_metric("fid")
    extractor = cls(name, [layer], feature_extractor_weights_path=weights_path, verbose=False)
    extractor.requires_grad_(False)
    return extractor.eval().to(device)


@lru_cache(maxsize=16)
def _hash_file(path: str, _mtime_ns: int, _size: int) -> str:
    return file_sha256(path)


def extractor_identity(extractor) -> dict[str, str]:
    """``extractor`` (name), ``extractor_hash`` (first 16 hex digits of the weights' SHA-256), layer."""
    path = getattr(extractor, "weights_path", None)
    if path is not None and os.path.isfile(path):
        st = os.stat(path)
        digest = _hash_file(str(path), st.st_mtime_ns, st.st_size)
    else:  # a third-party extractor without a weights file: hash its parameters
        h = hashlib.sha256()
        for k, v in sorted(extractor.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        digest = h.hexdigest()
    return {"extractor": extractor.get_name(), "extractor_hash": digest[:16],
            "feature_layer": extractor.get_requested_features_list()[0]}


def to_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as an 8-bit image file would hold them (floats are taken to be in [-1, 1])."""
    images = np.asarray(images)
    return images if images.dtype == np.uint8 else to_uint8(images)


@torch.no_grad()
def extract_features(extractor, images: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """float32 features (n, d) of images (n, C, H, W), quantised to uint8 first.

    Quantising makes the features of generated samples the same as torch-fidelity's on the same
    samples saved as PNG files, and identical inputs give identical features whatever the dtype.
    Runs the batches directly (no DataLoader worker processes: they cost more than LeNet itself).
    """
    pixels = to_pixels(images)
    device = next(extractor.parameters()).device
    out = []
    for i in range(0, len(pixels), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(pixels[i:i + batch_size])).to(device)
        out.append(extractor(batch)[0].float().cpu())
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out).numpy()


__all__ = ["EXTRACTORS", "check_extractor", "check_weights_file", "FeatureExtractorLeNet", "FeatureExtractorInception",
           "FeatureExtractorDINOv2", "create_extractor",
           "default_extractor", "extract_features", "extractor_identity", "to_pixels"]
