"""``inception``: torch-fidelity's Inception-v3 (the FID network), with an offline-safe weights lookup.

torch-fidelity downloads its weights from GitHub the first time and caches them in torch hub's
checkpoint folder. madlab uses, in order: ``metrics.weights_path``; the file torch-fidelity
already cached; a download through torch-fidelity, only when the network answers within a few
seconds and ``$MADLAB_OFFLINE`` is unset. Otherwise it stops at once with an error naming
``metrics.weights_path``: an offline machine never hangs on a download.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from madlab.core.errors import MadlabError

NAME = "inception"
WEIGHTS_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]


def cached_weights_path() -> Path:
    """Where torch-fidelity's download lands (torch hub's checkpoint folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _network_answers(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_inception_weights(weights_path: str | os.PathLike | None) -> Path | None:
    """A local weights file, or None when torch-fidelity may download them; else a MadlabError."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise MadlabError(f"metrics.weights_path: Inception weights file {path} does not exist")
        return path
    if cached_weights_path().is_file():
        return cached_weights_path()
    if os.environ.get("MADLAB_OFFLINE") or not _network_answers():
        raise MadlabError(
            f"metrics.extractor inception: no Inception-v3 weights here and no network to fetch them; set "
            f"metrics.weights_path to a copy of torch-fidelity's {WEIGHTS_FILE} (or use metrics.extractor: lenet-mnist "
            f"for MNIST)")
    return None


class FeatureExtractorInception(FeatureExtractorInceptionV3):
    """torch-fidelity's ``inception-v3-compat`` network; greyscale input is repeated to RGB.

    Features: ``"2048"`` (pool3, used for FID/KID/PR as everywhere), ``"logits_unbiased"``, ...
    """

    @classmethod
    def check_weights(cls, weights_path) -> None:
        """Validate-time: the weights can be had (a MadlabError naming metrics.weights_path otherwise)."""
        resolve_inception_weights(weights_path)

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        path = resolve_inception_weights(feature_extractor_weights_path)
        try:
            super().__init__(name, features_list, feature_extractor_weights_path=None if path is None else str(path),
                             **kwargs)
        except Exception as e:  # torch.load raises pickle, zip and runtime errors for a bad file
            where = path if path is not None else URL_INCEPTION_V3
            raise MadlabError(f"metrics.weights_path: cannot load Inception-v3 weights from {where} "
                              f"({str(e).splitlines()[0][:200]})") from None
        self.weights_path = path if path is not None else cached_weights_path()

    def forward(self, x):
        if x.dim() == 4 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return super().forward(x)
