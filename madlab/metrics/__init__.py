"""Metrics: the feature-space API of docs/design.md and the per-run evaluators the loop calls.

``make_evaluator`` builds, once per run, the object that scores each generation's samples
against a fixed real reference set: low-dimensional data are scored on the raw coordinates
(``madlab.metrics.lowdim``), images on features of a pinned extractor (``madlab.metrics.images``).
"""
from __future__ import annotations

from madlab.core.errors import ConfigError
from madlab.features import check_extractor, default_extractor
from madlab.features.feature_extractor_text_lm import NAME as TEXT_LM
from madlab.metrics.feature import feature_metrics
from madlab.metrics.images import ImageEvaluator
from madlab.metrics.lowdim import LowDimEvaluator
from madlab.metrics.registry import metric_names
from madlab.metrics.text import TEXT_LM_METRICS, TextEvaluator

#: what each data kind's evaluator computes (madlab.metrics.lowdim / madlab.metrics.images)
EVALUATOR_METRICS: dict[str, tuple[str, ...]] = {  # the text-lm metrics of tokens only when metrics.names asks
    kind: metric_names(kind) + metric_names(kind, on_request=True) for kind in ("vector", "image", "tokens")}
#: data kinds whose metrics are computed on the features of a feature extractor
EXTRACTOR_KINDS = frozenset({"image"})


def known_metric_names(dataset, generator_cls) -> list[str]:
    """Every metric a run of ``generator_cls`` on ``dataset`` can report."""
    names = list(EVALUATOR_METRICS.get(dataset.kind, ()))
    extra = sorted(set(generator_cls.model_metric_names) | set(getattr(dataset, "extra_metric_names", ())))
    return names + [n for n in extra if n not in names]


def check_metrics_config(metrics_cfg, dataset, generator_cls) -> None:
    """The validate-time check of the ``metrics`` section for one run (ConfigError naming the key):
    metric names known for this data kind, generator and dataset; for feature-space kinds a known
    extractor whose weights file exists and is readable. Builds no network and reads no weights."""
    names = getattr(metrics_cfg, "names", None)
    if names is not None:
        known = known_metric_names(dataset, generator_cls)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"metrics.names: {', '.join(map(repr, unknown))} not a metric of {dataset.kind} data "
                              f"with generator {generator_cls.name!r} on {dataset.name!r} (known: {', '.join(known)})")
        if not names:
            raise ConfigError("metrics.names: empty list (omit the key to compute every metric)")
    extractor = getattr(metrics_cfg, "extractor", None)
    weights_path = getattr(metrics_cfg, "weights_path", None)
    if dataset.kind == "tokens":
        _check_text_features(names, extractor, weights_path, dataset)
        return
    if dataset.kind not in EXTRACTOR_KINDS:
        if extractor is not None or weights_path is not None:
            key = "metrics.extractor" if extractor is not None else "metrics.weights_path"
            raise ConfigError(f"{key}: {dataset.kind} data are scored without a feature extractor")
        return
    check_extractor(extractor or default_extractor(dataset.name), weights_path)


def _check_text_features(names, extractor, weights_path, dataset) -> None:
    """Token data: feature metrics use the corpus's own ``text-lm`` encoder, trained by madlab
    (so no other extractor and no weights file); its training corpus must hold documents."""
    if extractor is not None and extractor != TEXT_LM:
        raise ConfigError(f"metrics.extractor: {extractor!r} is not a text encoder; token data use {TEXT_LM!r}, "
                          f"madlab's reference encoder trained on the dataset's corpus")
    if weights_path is not None:
        raise ConfigError(f"metrics.weights_path: the {TEXT_LM} text encoder is trained by madlab on the corpus "
                          f"(cached per corpus); it reads no weights file")
    if names is not None and set(names) & set(TEXT_LM_METRICS):
        corpus = dataset.encoder_corpus()
        if not len(corpus) or not (corpus >= 0).any():
            raise ConfigError(f"metrics.names: the {TEXT_LM} encoder of the feature metrics needs real documents "
                              f"to train on, and {dataset.name!r} has none")


def reference_set(dataset, metrics_cfg, n: int, *, seed: int):
    """The metrics' real reference set of a run: held out from training wherever the dataset has a split
    (``eval_set``), or drawn from the training pool when ``metrics.reference: training-pool`` (MAD's protocol)."""
    if getattr(metrics_cfg, "reference", "heldout") == "training-pool":
        return dataset.training_pool_eval_set(n, seed=seed)
    return dataset.eval_set(n, seed=seed)


def reference_source(dataset, metrics_cfg) -> str:
    """Where that reference set comes from, in words (recorded in every generation's metadata as ``reference``)."""
    if getattr(metrics_cfg, "reference", "heldout") == "training-pool" and dataset.size is not None:
        return "training pool (metrics.reference: training-pool)"
    return dataset.eval_source()


def make_evaluator(dataset, metrics_cfg, real_eval, *, cache_dir: str, device: str = "cpu"):
    """The evaluator for one run: ``evaluator(fake: Samples) -> dict[str, float]``."""
    if dataset.kind == "tokens":
        return TextEvaluator(dataset, metrics_cfg, real_eval, device=device)
    if dataset.kind == "image":
        return ImageEvaluator(dataset, metrics_cfg, real_eval, cache_dir=cache_dir, device=device)
    return LowDimEvaluator(dataset, metrics_cfg, real_eval)


__all__ = ["EVALUATOR_METRICS", "check_metrics_config", "reference_set", "reference_source", "feature_metrics", "known_metric_names", "make_evaluator"]
