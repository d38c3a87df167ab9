"""The component factory: a run config -> the dataset, the generator class and its resolved parameters."""
from __future__ import annotations

from pydantic import ValidationError

from madlab.core.errors import ConfigError
from madlab.datasets import open_dataset
from madlab.plugins.registry import get_generator_class
from madlab.schema.config import RunConfig, format_validation_error


def resolve_generator(run: RunConfig, dataset) -> RunConfig:
    """``run`` with ``generator_resolved`` filled (the generator's own check passed)."""
    cls = get_generator_class(run.generator["name"])
    params = cls.Params.model_validate({k: v for k, v in run.generator.items() if k != "name"})
    shape = dict(data_shape=tuple(dataset.shape), num_classes=dataset.num_classes)
    try:
        resolved = cls.resolve_params(params, **shape)
        cls.check(resolved, **shape)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "generator.")) from None
    except ValueError as exc:  # a plugin that raises ValueError still gets one line naming the section
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"generator: {exc}") from None
    return run.model_copy(update={"generator_resolved": resolved.model_dump(mode="json")})


def make_components(run: RunConfig):
    """(dataset instance, generator class, resolved generator params).

    A config that went through :func:`build_spec` carries the resolved parameters the driver
    computed (so every worker builds the same model whatever its preset tables say); a bare
    :class:`RunConfig` is resolved here.
    """
    dataset = open_dataset(run.dataset)
    generator_cls = get_generator_class(run.generator["name"])
    if run.generator_resolved is None:
        run = resolve_generator(run, dataset)
    params = generator_cls.Params.model_validate(run.generator_resolved)
    return dataset, generator_cls, params
