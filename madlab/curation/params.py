"""A run's ``loop.curation`` section: the curator it names (found through :mod:`madlab.plugins.registry`,
the ``madlab.curators`` entry-point group), its validated parameters, and the validate-time check."""
from __future__ import annotations

from pydantic import ValidationError

from madlab.core.errors import ConfigError
from madlab.plugins.curator import Curator, CuratorParams
from madlab.plugins.registry import get_curator_class
from madlab.schema.config import format_validation_error

KEY = "loop.curation"


def make_curator_params(section: dict) -> tuple[type[Curator], CuratorParams]:
    """``{name: ..., <params>}`` -> (curator class, validated params); ConfigError naming the key."""
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"{KEY}.name: required key is missing (loop.curation is {{name: ..., <params>}})")
    if not isinstance(section["name"], str):
        raise ConfigError(f"{KEY}.name: must be a curator name (got {section['name']!r})")
    cls = get_curator_class(section["name"])
    try:
        params = cls.Params.model_validate({k: v for k, v in section.items() if k != "name"})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{KEY}.")) from None
    return cls, params


def validate_curation(section: dict, dataset, where: str = "") -> None:
    """Everything ``madlab validate`` checks about ``loop.curation`` (raises ConfigError, one line)."""
    try:
        cls, params = make_curator_params(section)
        if dataset.kind not in cls.data_kinds:
            raise ConfigError(f"{KEY}.name: curator {cls.name!r} does not handle {dataset.kind} data "
                              f"(dataset {dataset.name!r})")
        if cls.candidates_per_kept(params) > params.max_oversampling:
            raise ConfigError(f"{KEY}.max_oversampling: curator {cls.name!r} draws "
                              f"{cls.candidates_per_kept(params):g} candidates per kept sample, above the cap "
                              f"{params.max_oversampling:g}")
        cls.check(params, dataset)
    except ConfigError as exc:
        if where:
            raise ConfigError(f"{exc}{where}") from None
        raise
