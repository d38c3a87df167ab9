"""Warm-up of the reference networks a sweep needs, while its runs start.

madlab trains its own pinned feature networks on first use (:mod:`madlab.core.pinned`): the LeNet MNIST
extractor and each corpus's ``text-lm`` encoder. The runner announces that work and, on this machine,
does it once before (or while) the runs start, so every worker loads the same cached weights.
"""
from __future__ import annotations

import json
import threading

from madlab.datasets import get_dataset_class, open_dataset
from madlab.features import default_extractor, feature_extractor_lenet as lenet, feature_extractor_text_lm as text_lm
from madlab.metrics.text import TEXT_LM_METRICS
from madlab.runner.jobs import Job
from madlab.runner.progress import Progress


def prepare_extractors(jobs: list[Job], progress: Progress, *, local: bool) -> "threading.Thread | None":
    """One-time work while the runs start: the pinned LeNet extractor is trained on first use
    (about a minute). Say so rather than sit silent, and on this machine train it here, once, so
    every worker loads the same cached weights; on a cluster each node's first worker does it.

    The training runs in a background thread (it is a pinned child process under the cache's file
    lock) and the runs start at once: a run needs the extractor only for its first metrics, after
    its generation-1 fit, and then waits on the lock; runs on other data never wait. Returns the
    thread, for the caller to join."""
    def uses_lenet(config: dict) -> bool:
        metrics = config.get("metrics") or {}
        if get_dataset_class(config["dataset"]["name"]).kind != "image" or metrics.get("weights_path"):
            return False
        return (metrics.get("extractor") or default_extractor(config["dataset"]["name"])) == "lenet-mnist"

    prepare_text_encoders(jobs, progress, local=local)
    if not any(uses_lenet(j.config) for j in jobs):
        return None
    if lenet.lenet_weights_cached():
        return None
    if not local:
        progress.note(f"each cluster node trains the LeNet feature extractor once on first use "
                      f"(~1 min, cached in {lenet.weights_dir()} there)")
        return None
    progress.note(f"training the LeNet feature extractor once (~1 min, while the runs start), cached in "
                  f"{lenet.weights_dir()}")

    def train() -> None:
        try:
            lenet.ensure_lenet_weights()
        except Exception as exc:  # noqa: BLE001 - the runs that need it retry under the lock and fail themselves
            progress.note(f"training the LeNet feature extractor failed here ({type(exc).__name__}: {exc}); "
                          f"the runs that need it will try again")

    thread = threading.Thread(target=train, name="madlab-lenet", daemon=True)
    thread.start()
    return thread


def prepare_text_encoders(jobs: list[Job], progress: Progress, *, local: bool) -> None:
    """The same for token runs that ask for feature metrics: each distinct corpus's ``text-lm`` encoder
    is trained here, once, before the runs start, so every run of the sweep reads one cached file and
    the table carries one encoder hash per corpus (on a cluster each node's first worker trains it,
    bit for bit the same: madlab.features.feature_extractor_text_lm)."""
    datasets = {}
    for job in jobs:
        names = (job.config.get("metrics") or {}).get("names") or ()
        if get_dataset_class(job.config["dataset"]["name"]).kind == "tokens" and set(names) & set(TEXT_LM_METRICS):
            datasets.setdefault(json.dumps(job.config["dataset"], sort_keys=True), job.config["dataset"])
    if not datasets:
        return
    for section in datasets.values():
        dataset = open_dataset(section)
        corpus = dataset.encoder_corpus()
        if text_lm.encoder_path(corpus, dataset.tokenizer).is_file():
            continue
        if not local:
            progress.note(f"each cluster node trains the text-lm encoder of {dataset.name} once on first use "
                          f"(cached in {text_lm.weights_dir()} there)")
            continue
        progress.note(f"training the text-lm encoder of {dataset.name} once ({len(corpus)} documents, "
                      f"under a minute), cached in {text_lm.weights_dir()}")
        text_lm.ensure_text_lm(corpus, dataset.tokenizer)
