"""Spec handling: a YAML spec -> validated runs (:mod:`~madlab.spec.reading` YAML and ``--set``,
:mod:`~madlab.spec.sweep` presets and sweeps, :mod:`~madlab.spec.validate` the checks,
:mod:`~madlab.spec.factory` the components a run is built from)."""
from madlab.spec.factory import make_components, resolve_generator
from madlab.spec.reading import DEFAULT_SPEC, load_yaml, parse_override, set_dotted
from madlab.spec.sweep import build_spec, load_spec
from madlab.spec.validate import validate_run

__all__ = ["DEFAULT_SPEC", "build_spec", "load_spec", "load_yaml", "make_components", "parse_override",
           "resolve_generator", "set_dotted", "validate_run"]
