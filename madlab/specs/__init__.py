"""Spec handling: a YAML spec -> validated runs (:mod:`~madlab.specs.reading` YAML and ``--set``,
:mod:`~madlab.specs.sweep` presets and sweeps, :mod:`~madlab.specs.validate` the checks,
:mod:`~madlab.specs.factory` the components a run is built from)."""
from madlab.specs.factory import make_components, resolve_generator
from madlab.specs.reading import DEFAULT_SPEC, load_yaml, parse_override, set_dotted
from madlab.specs.sweep import build_spec, load_spec
from madlab.specs.validate import validate_run

__all__ = ["DEFAULT_SPEC", "build_spec", "load_spec", "load_yaml", "make_components", "parse_override",
           "resolve_generator", "set_dotted", "validate_run"]
