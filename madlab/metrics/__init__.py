"""Metrics: the feature-space API of docs/design.md and the per-run evaluators the loop calls.

``make_evaluator`` builds, once per run, the object that scores each generation's samples
against a fixed real reference set: low-dimensional data are scored on the raw coordinates
(``madlab.metrics.lowdim``), images on features of a pinned extractor (``madlab.metrics.images``).
"""
from __future__ import annotations


def feature_metrics(real, fake, k: int = 5, **kwargs) -> dict[str, float]:
    """FID, KID, precision, recall, density, coverage and Vendi of two feature arrays."""
    from madlab.metrics.feature import feature_metrics as _feature_metrics

    return _feature_metrics(real, fake, k=k, **kwargs)


def make_evaluator(dataset, metrics_cfg, real_eval, *, cache_dir: str, device: str = "cpu"):
    """The evaluator for one run: ``evaluator(fake: Samples) -> dict[str, float]``."""
    if dataset.kind == "tokens":
        from madlab.metrics.text import TextEvaluator

        return TextEvaluator(dataset, metrics_cfg, real_eval)
    if dataset.kind == "image":
        from madlab.metrics.images import ImageEvaluator

        return ImageEvaluator(dataset, metrics_cfg, real_eval, cache_dir=cache_dir, device=device)
    from madlab.metrics.lowdim import LowDimEvaluator

    return LowDimEvaluator(dataset, metrics_cfg, real_eval)
