"""Per-run image evaluator: features of a pinned extractor, then the seven feature metrics.

Built once per run by :func:`madlab.metrics.make_evaluator`. It resolves the extractor
(``metrics.extractor``, default ``lenet-mnist`` for MNIST datasets and ``inception`` otherwise),
computes everything that depends on the real reference set alone (features, FID statistics, k-NN
radii) once, and caches it on disk under ``cache_dir`` keyed by the extractor's weights hash and a
digest of the real pixels, so a resumed or repeated run does not recompute it. Each generation
then costs one feature pass over the fake samples plus the metrics.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from madlab.core.errors import ConfigError, MadlabError, RunFailed
from madlab.core.files import atomic_write_bytes
from madlab.core.samples import Samples
from madlab.features import create_extractor, default_extractor, extract_features, extractor_identity, to_pixels
from madlab.metrics.feature import (METRIC_NAMES, RealStats, check_k, explicit_kid_subset_size, feature_metrics,
                                    resolve_kid_subset_size)
from madlab.metrics.memorisation import METRICS as MEMORISATION, Reference, memorisation_metrics


class ImageEvaluator:
    """``evaluator(fake: Samples) -> {fid, kid, precision, recall, density, coverage, vendi}``.

    ``metadata`` names the extractor and its weights hash (the engine stores them with the table),
    so numbers from different extractors are never mixed.
    """

    def __init__(self, dataset, metrics_cfg, real_eval: Samples, *, cache_dir: str, device: str = "cpu"):
        self.k = int(getattr(metrics_cfg, "k", 5))
        names = getattr(metrics_cfg, "names", None)
        self.memorisation = tuple(n for n in MEMORISATION if n in (names or ()))  # only when metrics.names asks
        self._heldout = None
        if names is not None:
            unknown = sorted(set(names) - set(METRIC_NAMES) - set(MEMORISATION))
            if unknown:
                raise ConfigError(f"metrics.names: {', '.join(unknown)} not available for image data "
                                  f"(image metrics: {', '.join(METRIC_NAMES + MEMORISATION)})")
            names = [n for n in METRIC_NAMES if n in names]
        self.names = tuple(names) if names is not None else METRIC_NAMES
        self.kid_subset_size = explicit_kid_subset_size(metrics_cfg)
        self.real_shape = tuple(real_eval.x.shape[1:])
        n_real = len(real_eval)
        n_fake = getattr(metrics_cfg, "n_eval", None) or n_real
        if {"precision", "recall", "density", "coverage"} & set(self.names):
            check_k(self.k, n_real, n_fake)
        if "kid" in self.names:
            resolve_kid_subset_size(self.kid_subset_size, n_real, n_fake)

        name = getattr(metrics_cfg, "extractor", None) or default_extractor(dataset.name)
        self.device = getattr(metrics_cfg, "device", None) or device
        self.extractor = create_extractor(name, weights_path=getattr(metrics_cfg, "weights_path", None),
                                          device=self.device)
        identity = extractor_identity(self.extractor)
        pixels = to_pixels(real_eval.x)
        digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()[:16]
        self.real = self._real_stats(pixels, Path(cache_dir) / f"real-{name}-{identity['extractor_hash']}-{digest}.npz")
        self.metadata = {**identity, "real_digest": digest, "n_real_eval": str(n_real)}
        record = Path(str(self.extractor.weights_path)).with_suffix(".json")
        if record.is_file():
            acc = json.loads(record.read_text()).get("heldout_accuracy")
            if acc is not None:
                self.metadata["extractor_heldout_accuracy"] = f"{acc:.4f}"

    def _real_stats(self, pixels: np.ndarray, path: Path) -> RealStats:
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    stats = RealStats.from_arrays({k: z[k] for k in z.files})
                if self.k in stats.radii:
                    return stats
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache entry: recompute and overwrite it
        stats = RealStats.from_features(self._features(pixels), k=self.k)
        buffer = io.BytesIO()
        np.savez(buffer, **stats.to_arrays())
        atomic_write_bytes(path, buffer.getvalue())
        return stats

    def _features(self, images: np.ndarray) -> np.ndarray:
        return extract_features(self.extractor, images)

    def __call__(self, fake: Samples, train: Samples | None = None) -> dict[str, float]:
        """Scores of ``fake``; ``train`` (the generation's training set) for the memorisation metrics."""
        x = np.asarray(fake.x)
        if tuple(x.shape[1:]) != self.real_shape:
            raise MadlabError(f"generated images have shape {tuple(x.shape[1:])}, the real set {self.real_shape}")
        if not np.isfinite(x).all():
            raise RunFailed("generated samples contain NaN or inf")
        features = self._features(x)
        scores = feature_metrics(self.real, features, k=self.k, names=self.names,
                                 kid_subset_size=self.kid_subset_size) if self.names else {}
        if self.memorisation:
            if self._heldout is None:
                self._heldout = Reference.of(self.real.features)
            train_features = None if train is None else self._features(np.asarray(train.x))
            scores.update(memorisation_metrics(features, train_features, self._heldout, k=self.k,
                                               wanted=self.memorisation.__contains__))
        return scores
