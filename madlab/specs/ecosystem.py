"""Ecosystem specs: a YAML file with a top-level ``ecosystem`` section -> validated ecosystems.

Presets, ``--set`` and sweeps work as for loop specs (:mod:`madlab.specs.sweep`): ``sweep`` maps
dotted keys (``ecosystem.mixing``, ``seed``) or linked axes (mappings with a ``label``) to lists.
Every member is validated as the run it is (:func:`madlab.specs.validate.validate_run`: dataset and
generator parameters, data kinds, sizes, λ, curation) with its errors named under
``ecosystem.members.<i>``; the first problem is one ConfigError, before anything is written.
"""
from __future__ import annotations

import re

from pydantic import ValidationError

from madlab.core.errors import ConfigError
from madlab.plugins.registry import get_generator_class
from madlab.schema.config import MetricsConfig, ResourcesConfig, Run, format_validation_error
from madlab.schema.ecosystem import REAL_SCHEMES, EcoRun, EcoSpec, EcosystemConfig, MixingCounts, member_seed
from madlab.specs.reading import load_yaml
from madlab.specs.sweep import prepare_sweep, swept_configs
from madlab.specs.validate import check_components, describe, validate_run

TOP_LEVEL = ("name", "seed", "dataset", "ecosystem", "metrics", "sweep", "resources", "out", "presets")


def is_ecosystem_spec(path: str) -> bool:
    """True when ``path`` is a YAML mapping with a top-level ``ecosystem`` key."""
    try:
        raw = load_yaml(path)
    except ConfigError:
        return False  # the loop-spec loader reports the problem with its own message
    return "ecosystem" in raw


def load_ecosystem_spec(path, overrides: list[str] = (), preset: str | None = None, out: str | None = None) -> EcoSpec:
    return build_ecosystem_spec(load_yaml(path), overrides, preset, out, path=str(path))


def build_ecosystem_spec(raw: dict, overrides: list[str] = (), preset: str | None = None, out: str | None = None,
                         path: str | None = None) -> EcoSpec:
    """Validate an ecosystem spec's mapping: presets and ``--set`` applied, the sweep expanded,
    every member of every ecosystem checked against its dataset and generator."""
    raw, _, blocks, fixed, out_dir = prepare_sweep(raw, overrides, preset, out, allowed=TOP_LEVEL,
                                                       kind=" of an ecosystem spec", default_name="ecosystem")
    runs = [run for block in blocks for run in _expand(raw, block, fixed)]
    ids = [r.eco_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"sweep: two ecosystems resolve to the same config ({next(i for i in ids if ids.count(i) > 1)})")
    return EcoSpec(base=raw, out=out_dir, runs=runs, path=path)


def _expand(raw: dict, block: dict, fixed: list) -> list[EcoRun]:
    return [validate_ecosystem(config, swept) for config, swept in swept_configs(raw, block, fixed, lists_as_json=True)]


def validate_ecosystem(config: dict, swept: dict | None = None) -> EcoRun:
    """One ecosystem's mapping -> an EcoRun whose members are validated, resolved runs."""
    swept = swept or {}
    where = f" [ecosystem {describe(swept)}]" if swept else ""
    for key in ("name", "dataset", "ecosystem"):
        if key not in config:
            raise ConfigError(f"{key}: required key is missing{where}")
    if not isinstance(config["dataset"], dict) or "name" not in config["dataset"]:
        raise ConfigError(f"dataset.name: required key is missing{where}")
    if not isinstance(config["name"], str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", config["name"]):
        raise ConfigError(f"name: must be letters, digits, '_', '.', '-'{where}")
    try:
        eco = EcosystemConfig.model_validate(config["ecosystem"])
        metrics = MetricsConfig.model_validate(config.get("metrics") or {})
        resources = ResourcesConfig.model_validate(config.get("resources") or {})
    except ValidationError as exc:
        title = exc.title
        prefix = "ecosystem." if title == "EcosystemConfig" else "metrics." if title == "MetricsConfig" else "resources."
        raise ConfigError(format_validation_error(exc, prefix) + where) from None
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0 (got {seed!r}){where}")
    planner = MixingCounts(eco)
    members = {}
    for i, member in enumerate(eco.members):
        key = f"ecosystem.members.{i}"
        run = _member_run(config, eco, member, seed, planner.produced(member.name))
        try:
            validated = validate_run(run)
            _check_member_sizes(eco, member, key)
            member_run = Run(validated, {})
            check_components([member_run])
        except ConfigError as exc:
            raise ConfigError(_rename(str(exc), key) + where) from None
        members[member.name] = member_run.config
    return EcoRun(config["name"], seed, config["dataset"], eco, members, swept, metrics, resources)


def _member_run(config: dict, eco: EcosystemConfig, member, seed: int, produced: int) -> dict:
    loop = {"scheme": REAL_SCHEMES[eco.real], "generations": eco.generations, "n_real": member.n_real,
            "n_synthetic": produced, "bias": member.bias, "warm_start": member.warm_start}
    if member.n_initial is not None:
        loop["n_initial"] = member.n_initial
    if member.curation is not None:
        loop["curation"] = member.curation
    if eco.real == "none":  # the plain fully-synthetic loop's generation 1 trains on n_real rows
        loop["n_real"] = member.n_initial or member.n_real
    return {"name": f"{config['name']}.{member.name}", "seed": member_seed(seed, member.name),
            "dataset": config["dataset"], "generator": member.generator, "loop": loop,
            "metrics": config.get("metrics") or {}, "resources": config.get("resources") or {}}


def _check_member_sizes(eco: EcosystemConfig, member, key: str) -> None:
    """A member's training set from generation 2 on (its real rows, if any, + n_synthetic) must be one
    its generator can fit (the run's own check counts the rows the member *produces* instead)."""
    cls = get_generator_class(member.generator["name"])
    need = cls.min_train_size(cls.Params.model_validate({k: v for k, v in member.generator.items() if k != "name"}))
    later = (member.n_real if eco.real != "none" else 0) + member.n_synthetic
    if eco.generations > 1 and later < need:
        raise ConfigError(f"{key}.n_synthetic: generator {member.generator['name']!r} needs at least {need} training "
                          f"samples, generation 2 would have {later}")


def _rename(message: str, key: str) -> str:
    """A member's run error, its key moved under ``ecosystem.members.<i>``."""
    for prefix in ("loop.", "generator."):
        if message.startswith(prefix):
            rest = message[len(prefix):]
            return f"{key}.{rest}" if prefix == "loop." else f"{key}.generator.{rest}"
    return message
