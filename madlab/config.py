"""Loop specs: YAML -> validated run configs.

A spec has the top-level keys of docs/design.md (``name, seed, dataset, generator, loop, metrics,
sweep, resources, out``) plus ``presets`` (named sets of dotted overrides, e.g. a ``cpu`` scale
of a paper-scale spec). Everything is validated before anything runs; the first problem is
reported in one line that names the key.

Sweeps: ``sweep`` maps dotted keys to lists; the runs are the product of the lists. A sweep
axis whose values are mappings is a *linked* axis: each value is a partial config merged into
the base (``label`` names it), for settings that must change together, such as a dataset and
the generator fitted to it (a ``dataset``/``generator`` section given there replaces the base one).
``sweep`` may also be a list of such mappings: the runs are the union of their products (e.g.
a cheap theory grid beside a few neural runs). ``--set`` and presets win over sweep values.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from madlab.datasets import get_dataset_class, open_dataset
from madlab.errors import ConfigError
from madlab.registry import get_generator_class
from madlab.tracking.targets import parse_targets

SCHEMES = ("fully-synthetic", "fixed-real", "fresh-real", "accumulate", "accumulate-subsample")
TOP_LEVEL = ("name", "seed", "dataset", "generator", "loop", "metrics", "sweep", "resources", "out", "presets",
             "tracking")


def _default_spec() -> Path:
    """loops/quickstart.yaml: the installed ``madlab.loops`` package data, or the source tree's copy."""
    from importlib.resources import files
    try:
        candidate = Path(str(files("madlab.loops") / "quickstart.yaml"))
        if candidate.is_file():
            return candidate
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "loops" / "quickstart.yaml"


DEFAULT_SPEC = _default_spec()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LoopConfig(_Strict):
    scheme: Literal["fully-synthetic", "fixed-real", "fresh-real", "accumulate", "accumulate-subsample"]
    generations: int = Field(ge=1)
    n_real: int = Field(ge=0)
    n_synthetic: int = Field(ge=0)
    n_initial: int | None = Field(None, ge=1, description="fresh-real: real samples at generation 1")
    bias: float = Field(1.0, ge=0.0, le=1.0, description="sampling bias λ, 1 = unbiased")
    warm_start: bool = False
    #: a bool or "truncated" (not a new field: a new field would change every run id)
    accumulate_synthetic: Literal[False, True, "truncated"] = Field(
        False, description="fixed-real: keep every earlier synthetic set (true), or the first "
                           "floor(g n_synthetic / G) rows of set g of G (\"truncated\", Gillman et al.'s toy)")
    memory: int = Field(1, ge=1, description="fresh-real: synthetic samples come from the last K models")
    train_size: int | None = Field(None, ge=1, description="accumulate-subsample: fixed training-set size")
    curation: dict | None = Field(None, description="{name: <curator>, <params>}: selects or corrects each "
                                                    "generation's synthetic samples (madlab.curation)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.first_size < 1:
            raise _KeyError("n_real", "must be > 0: generation 1 trains on real data only")
        if self.generations > 1 and self.n_synthetic < 1:
            raise _KeyError("n_synthetic", "must be > 0 when generations > 1")
        if self.accumulate_synthetic and self.scheme != "fixed-real":
            raise _KeyError("accumulate_synthetic", "only applies to scheme fixed-real")
        if self.memory > 1 and self.scheme != "fresh-real":
            raise _KeyError("memory", "only applies to scheme fresh-real")
        if self.n_initial is not None and self.scheme != "fresh-real":
            raise _KeyError("n_initial", "only applies to scheme fresh-real (other schemes start from n_real)")
        if self.train_size is not None and self.scheme != "accumulate-subsample":
            raise _KeyError("train_size", "only applies to scheme accumulate-subsample")
        if self.scheme == "fresh-real" and self.generations > 1 and self.n_real < 1:
            raise _KeyError("n_real", "fresh-real needs n_real > 0 new real samples per generation")
        return self

    @property
    def first_size(self) -> int:
        """Training-set size at generation 1 (real data only)."""
        if self.scheme == "fresh-real" and self.n_initial is not None:
            return self.n_initial
        return self.n_real


class MetricsConfig(_Strict):
    k: int = Field(5, ge=1, description="nearest neighbours for precision/recall/density/coverage")
    n_eval: int | None = Field(None, ge=2, description="samples scored per generation (default n_synthetic)")
    names: list[str] | None = Field(None, description="restrict to these metrics")
    extractor: str | None = Field(None, description="image feature extractor (default per dataset)")
    weights_path: str | None = Field(None, description="local weights file for the extractor")
    kid_subset_size: int | None = Field(None, ge=2, description="KID subset size (default min(1000, n_eval))")
    device: str | None = None


class ResourcesConfig(_Strict):
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    memory: int | None = Field(None, gt=0, description="bytes of RAM reserved per run")


class RunConfig(_Strict):
    """One fully resolved run: what a generation step needs, and nothing from the sweep."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    dataset: dict
    generator: dict
    loop: LoopConfig
    metrics: MetricsConfig = MetricsConfig()
    resources: ResourcesConfig = ResourcesConfig()
    #: the generator's hyper-parameters as the run uses them (preset expanded, data-dependent
    #: defaults filled): set by :func:`build_spec` from ``Generator.resolve_params``, never by the user
    generator_resolved: dict | None = None

    def identity(self) -> dict:
        """What determines a run's results (resources do not)."""
        data = self.model_dump(mode="json", exclude={"resources"})
        data["metrics"].pop("device", None)
        return data

    def run_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class Run:
    config: RunConfig
    swept: dict[str, Any] = field(default_factory=dict)  # table column -> value

    @property
    def run_id(self) -> str:
        parts = [f"{k}={_slug(v)}" for k, v in self.swept.items()]
        slug = ",".join(parts)[:80]
        return f"{slug}-{self.config.run_hash()}" if slug else self.config.run_hash()


@dataclass
class Spec:
    base: dict
    sweep: dict | list
    out: str
    runs: list[Run]
    path: str | None = None
    #: the experiment trackers the sweep feeds (madlab.tracking.Target): no part of any run's config
    tracking: list = field(default_factory=list)


class _KeyError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


# ----------------------------------------------------------------------------- loading


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a spec must be a YAML mapping of {', '.join(TOP_LEVEL)}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key):
        raise ConfigError(f"--set {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[:i + 1])}: is not a mapping, cannot set {key}")
        node = child
    node[parts[-1]] = value


def load_spec(path: str | Path | None = None, overrides: list[str] = (), preset: str | None = None,
              out: str | None = None) -> Spec:
    """Read, override, expand and validate a spec. Raises ConfigError naming the key."""
    path = Path(path) if path else DEFAULT_SPEC
    raw = load_yaml(path)
    return build_spec(raw, overrides=overrides, preset=preset, out=out, path=str(path))


def build_spec(raw: dict, overrides: list[str] = (), preset: str | None = None, out: str | None = None,
               path: str | None = None) -> Spec:
    raw = copy.deepcopy(raw)
    unknown = [k for k in raw if k not in TOP_LEVEL]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key (allowed: {', '.join(TOP_LEVEL)})")
    presets = raw.pop("presets", None) or {}
    if not isinstance(presets, dict):
        raise ConfigError("presets: must map a preset name to {dotted.key: value}")
    sweep = raw.pop("sweep", None) or {}
    blocks = sweep if isinstance(sweep, list) else [sweep]
    if not blocks or not all(isinstance(b, dict) for b in blocks):
        raise ConfigError("sweep: must map dotted keys to lists of values (or be a list of such mappings)")

    pairs: list[tuple[str, Any]] = []
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"--preset {preset}: not defined in this spec (defined: {', '.join(presets) or 'none'})")
        if not isinstance(presets[preset], dict):
            raise ConfigError(f"presets.{preset}: must map dotted keys to values")
        pairs += list(presets[preset].items())
    pairs += [parse_override(o) for o in overrides]
    fixed = []
    for key, value in pairs:
        for block in blocks:
            if key.startswith("sweep."):
                block[key[len("sweep."):]] = value
            else:
                block.pop(key, None)  # fixing a swept key removes that axis
        if not key.startswith("sweep."):
            set_dotted(raw, key, value)
            fixed.append((key, value))

    out_dir = out or raw.pop("out", None) or f"results/{raw.get('name', 'madlab')}"
    raw.pop("out", None)
    if not isinstance(out_dir, str):
        raise ConfigError("out: must be a path string")
    tracking = parse_targets(raw.pop("tracking", None), out_dir)

    runs = []
    for block in blocks:
        axes = _sweep_axes(block)
        for combo in itertools.product(*[values for _, values in axes]):
            config = copy.deepcopy(raw)
            swept = {}
            for (key, _), value in zip(axes, combo):
                if isinstance(value, dict):
                    patch = dict(value)
                    label = patch.pop("label", None)
                    _merge(config, patch)
                    swept[key] = label if label is not None else json.dumps(patch, sort_keys=True)
                else:
                    set_dotted(config, key, value)
                    swept[key.split(".")[-1]] = value
            for key, value in fixed:  # the user's --set / preset wins over linked sweep values
                set_dotted(config, key, value)
            runs.append(Run(validate_run(config, context=_describe(swept)), swept))
    _check_components(runs)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"sweep: two runs resolve to the same config ({dup})")
    return Spec(base=raw, sweep=sweep, out=out_dir, runs=runs, path=path, tracking=tracking)


def _sweep_axes(sweep: dict) -> list[tuple[str, list]]:
    axes = []
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key}: must be a non-empty list of values")
        if any(isinstance(v, dict) for v in values) and not all(isinstance(v, dict) for v in values):
            raise ConfigError(f"sweep.{key}: mix of mappings and plain values")
        if not all(isinstance(v, dict) for v in values) and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
            raise ConfigError(f"sweep.{key}: not a dotted config key")
        axes.append((key, values))
    return axes


def _merge(tree: dict, patch: dict, top: bool = True) -> None:
    """Deep-merge ``patch`` into ``tree``; a dataset or generator section is replaced whole,
    because its parameters belong to its ``name``."""
    for key, value in patch.items():
        if top and key in ("dataset", "generator"):
            tree[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value, top=False)
        elif "." in key:
            set_dotted(tree, key, value)
        else:
            tree[key] = copy.deepcopy(value)


def _describe(swept: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in swept.items())


def _slug(value) -> str:
    text = str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)[:24]


# ----------------------------------------------------------------------------- validation


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the key of the first problem pydantic found (cross-field checks name their own)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key = f"{prefix}{loc}" if loc else prefix.rstrip(".")
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyError):  # a cross-field check names its own key
        return f"{prefix}{loc + '.' if loc else ''}{ctx_error.key}: {ctx_error.message}"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return f"{key}: {message}"


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
    floor = generator_cls.min_bias_exclusive
    if floor is not None and run.loop.bias <= floor:
        raise ConfigError(f"loop.bias: generator {generator_cls.name!r} needs λ > {floor:g}, got {run.loop.bias:g}{where}")
    if run.loop.curation is not None:
        from madlab.curation import validate_curation

        validate_curation(run.loop.curation, dataset_cls(ds_params), where)
    return run


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
        later = {
            "fully-synthetic": loop.n_synthetic,
            "fixed-real": loop.n_real + loop.n_synthetic,
            "fresh-real": loop.n_real + loop.n_synthetic,
            "accumulate": loop.n_real + loop.n_synthetic,
            "accumulate-subsample": loop.train_size or loop.n_real,
        }[loop.scheme]
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


def _check_components(runs: list[Run]) -> None:
    """Build, without running it, everything each run of the sweep will use, and resolve its generator.

    Opens each distinct dataset once (missing or corrupt files fail here), checks that finite ones
    hold the real rows the loop will draw, asks the generator class to resolve and check its
    hyper-parameters on the dataset's shape (``Generator.resolve_params`` / ``Generator.check``),
    and checks metric names and the feature extractor. The first problem is a ConfigError naming
    the key; nothing has been written.
    """
    opened = {}
    for run in runs:
        where = f" [run {_describe(run.swept)}]" if run.swept else ""
        key = json.dumps(run.config.dataset, sort_keys=True)
        if key not in opened:
            opened[key] = open_dataset(run.config.dataset)
        dataset = opened[key]
        try:
            _check_draws(run.config, dataset)
            dataset.check_run(run.config)
            run.config = _resolve_generator(run.config, dataset)
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


def _resolve_generator(run: RunConfig, dataset) -> RunConfig:
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


def _check_metrics(run: RunConfig, dataset) -> None:
    from madlab.metrics import check_metrics_config

    check_metrics_config(run.metrics, dataset, get_generator_class(run.generator["name"]))


def eval_size(run: RunConfig) -> int:
    """Samples scored per generation: metrics.n_eval, else n_synthetic (else n_real)."""
    return run.metrics.n_eval or run.loop.n_synthetic or run.loop.first_size


def make_components(run: RunConfig):
    """(dataset instance, generator class, resolved generator params).

    A config that went through :func:`build_spec` carries the resolved parameters the driver
    computed (so every worker builds the same model whatever its preset tables say); a bare
    :class:`RunConfig` is resolved here.
    """
    dataset = open_dataset(run.dataset)
    generator_cls = get_generator_class(run.generator["name"])
    if run.generator_resolved is None:
        run = _resolve_generator(run, dataset)
    params = generator_cls.Params.model_validate(run.generator_resolved)
    return dataset, generator_cls, params
