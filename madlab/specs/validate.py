"""Validation: everything ``madlab validate`` checks before anything runs or is written.

A config that passes the models (:mod:`madlab.schema.config`) is checked against what it names:
the dataset and generator parameters, the sizes each generator needs, the curator, the real rows a
finite dataset holds, the generator's own check on the dataset's shape, the metrics and the
feature extractor. The first problem is one ConfigError naming the key.
"""
from __future__ import annotations

import json

from pydantic import ValidationError

from madlab.core.errors import ConfigError
from madlab.curation import validate_curation
from madlab.datasets import get_dataset_class, open_dataset
from madlab.metrics import check_metrics_config
from madlab.plugins.registry import get_generator_class
from madlab.schema.config import Run, RunConfig, eval_size, format_validation_error
from madlab.schema.schemes import later_size
from madlab.specs.factory import resolve_generator


def describe(swept: dict) -> str:
    """``key=value, ...`` of a run's sweep values (the ``[run ...]`` suffix of an error)."""
    return ", ".join(f"{k}={v}" for k, v in swept.items())


def validate_run(config: dict, context: str = "") -> RunConfig:
    where = f" [run {context}]" if context else ""
    for section in ("dataset", "generator"):
        if section not in config:
            raise ConfigError(f"{section}: required key is missing{where}")
        if not isinstance(config[section], dict) or "name" not in config[section]:
            raise ConfigError(f"{section}.name: required key is missing{where}")
    try:
        run = RunConfig.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc) + where) from None

    dataset_cls = get_dataset_class(run.dataset["name"])
    generator_cls = get_generator_class(run.generator["name"])
    ds_params = _validate_params(dataset_cls.Params, run.dataset, "dataset.", where)
    gen_params = _validate_params(generator_cls.Params, run.generator, "generator.", where)
    if dataset_cls.kind not in generator_cls.data_kinds:
        raise ConfigError(f"generator.name: {generator_cls.name!r} does not handle {dataset_cls.kind} data "
                          f"(dataset {dataset_cls.name!r}){where}")
    _check_sizes(run, generator_cls.min_train_size(gen_params), generator_cls.name, where)
    check_bias(run.loop.bias, generator_cls, dataset_cls.kind, "loop.bias", where)
    floor = generator_cls.min_bias_exclusive
    if floor is not None and run.loop.bias <= floor:
        raise ConfigError(f"loop.bias: generator {generator_cls.name!r} needs λ > {floor:g}, got {run.loop.bias:g}{where}")
    if run.loop.curation is not None:
        validate_curation(run.loop.curation, dataset_cls(ds_params), where)
    if run.loop.sims is not None and not generator_cls.supports_sims:
        raise ConfigError(f"loop.sims: generator {generator_cls.name!r} is not a diffusion model; SIMS guides a "
                          f"diffusion model's score by an auxiliary one (generators with SIMS: ddpm){where}")
    return run


#: the most a temperature may be (p^(1/λ) is uniform to float precision long before)
MAX_TEMPERATURE = 100.0


def check_bias(bias: float, generator_cls, kind: str, key: str, where: str = "") -> None:
    """λ is a temperature for text generators (any value in [0, MAX_TEMPERATURE]: Marchi et al.'s heat
    death needs > 1) and MAD's sampling bias elsewhere ([0, 1]); the message says which applies."""
    if kind == "tokens":
        if bias > MAX_TEMPERATURE:
            raise ConfigError(f"{key}: λ is the sampling temperature of text generator {generator_cls.name!r}, "
                              f"in [0, {MAX_TEMPERATURE:g}]; got {bias:g}{where}")
    elif bias > 1.0:
        raise ConfigError(f"{key}: λ is MAD's sampling bias for generator {generator_cls.name!r} ({kind} data), "
                          f"in [0, 1]; λ > 1 is a temperature, allowed only for text generators; got {bias:g}{where}")


def _validate_params(params_cls, section: dict, prefix: str, where: str):
    values = {k: v for k, v in section.items() if k != "name"}
    try:
        return params_cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix) + where) from None


def _check_sizes(run: RunConfig, need: int, generator: str, where: str) -> None:
    loop = run.loop
    first_key = "loop.n_initial" if loop.scheme == "fresh-real" and loop.n_initial is not None else "loop.n_real"
    if loop.first_size < need:
        raise ConfigError(f"{first_key}: generator {generator!r} needs at least {need} training samples, "
                          f"generation 1 would have {loop.first_size}{where}")
    if loop.generations > 1:
        later = later_size(loop)
        if later < need:
            key = "loop.train_size" if loop.scheme == "accumulate-subsample" else "loop.n_synthetic"
            raise ConfigError(f"{key}: generator {generator!r} needs at least {need} training samples, "
                              f"generation 2 would have {later}{where}")
    n_eval = eval_size(run)
    if run.metrics.kid_subset_size is not None and run.metrics.kid_subset_size > n_eval:
        raise ConfigError(f"metrics.kid_subset_size: {run.metrics.kid_subset_size} exceeds the {n_eval} samples "
                          f"scored per generation (metrics.n_eval / loop.n_synthetic){where}")
    if run.metrics.k >= n_eval:
        raise ConfigError(f"metrics.k: k={run.metrics.k} must be smaller than the {n_eval} samples scored "
                          f"per generation (metrics.n_eval / loop.n_synthetic){where}")


def check_components(runs: list[Run]) -> None:
    """Build, without running it, everything each run of the sweep will use, and resolve its generator.

    Opens each distinct dataset once (missing or corrupt files fail here), checks that finite ones
    hold the real rows the loop will draw, asks the generator class to resolve and check its
    hyper-parameters on the dataset's shape (``Generator.resolve_params`` / ``Generator.check``),
    and checks metric names and the feature extractor. The first problem is a ConfigError naming
    the key; nothing has been written.
    """
    opened = {}
    for run in runs:
        where = f" [run {describe(run.swept)}]" if run.swept else ""
        key = json.dumps(run.config.dataset, sort_keys=True)
        if key not in opened:
            opened[key] = open_dataset(run.config.dataset)
        dataset = opened[key]
        try:
            _check_draws(run.config, dataset)
            dataset.check_run(run.config)
            run.config = resolve_generator(run.config, dataset)
            _check_metrics(run.config, dataset)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None


def _check_draws(run: RunConfig, dataset) -> None:
    loop = run.loop
    if dataset.size is None:
        return
    needed = loop.first_size + (loop.generations - 1) * loop.n_real if loop.scheme == "fresh-real" else loop.first_size
    if needed > dataset.size:
        raise ConfigError(f"loop.n_real: the loop draws {needed} real samples but dataset "
                          f"{dataset.name!r} has {dataset.size}")


def _check_metrics(run: RunConfig, dataset) -> None:
    check_metrics_config(run.metrics, dataset, get_generator_class(run.generator["name"]))
