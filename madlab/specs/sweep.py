"""Sweeps and presets: one spec -> the list of runs it stands for.

``sweep`` maps dotted keys to lists; the runs are the product of the lists. A sweep axis whose
values are mappings is a *linked* axis: each value is a partial config merged into the base
(``label`` names it), for settings that must change together, such as a dataset and the generator
fitted to it (a ``dataset``/``generator`` section given there replaces the base one). ``sweep``
may also be a list of such mappings: the runs are the union of their products (e.g. a cheap theory
grid beside a few neural runs). ``--set`` and presets (named sets of dotted overrides, e.g. a
``cpu`` scale of a paper-scale spec) win over sweep values.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
from pathlib import Path
from typing import Any

from madlab.core.errors import ConfigError
from madlab.schema.config import Run, Spec
from madlab.specs.reading import DEFAULT_SPEC, TOP_LEVEL, load_yaml, parse_override, set_dotted
from madlab.specs.validate import check_components, describe, validate_run
from madlab.tracking.targets import parse_targets


def load_spec(path: str | Path | None = None, overrides: list[str] = (), preset: str | None = None,
              out: str | None = None) -> Spec:
    """Read, override, expand and validate a spec. Raises ConfigError naming the key."""
    path = Path(path) if path else DEFAULT_SPEC
    raw = load_yaml(path)
    return build_spec(raw, overrides=overrides, preset=preset, out=out, path=str(path))


def build_spec(raw: dict, overrides: list[str] = (), preset: str | None = None, out: str | None = None,
               path: str | None = None) -> Spec:
    """Validate a spec's mapping: presets and ``--set`` applied, the sweep expanded, every run checked."""
    raw, sweep, blocks, fixed, out_dir = prepare_sweep(raw, overrides, preset, out, allowed=TOP_LEVEL, kind="",
                                                       default_name="madlab")
    tracking = parse_targets(raw.pop("tracking", None), out_dir)

    runs = [run for block in blocks for run in _expand(raw, block, fixed)]
    check_components(runs)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"sweep: two runs resolve to the same config ({dup})")
    return Spec(base=raw, sweep=sweep, out=out_dir, runs=runs, path=path, tracking=tracking)


def prepare_sweep(raw: dict, overrides, preset: str | None, out: str | None, *, allowed, kind: str,
                  default_name: str) -> tuple[dict, dict | list, list[dict], dict, str]:
    """The steps every spec kind shares: unknown top-level keys refused, presets and ``--set`` applied,
    the sweep blocks checked, the results folder chosen. Returns (raw without presets/sweep/out,
    the sweep as written, its blocks, the fixed overrides, the results folder)."""
    raw = copy.deepcopy(raw)
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key{kind} (allowed: {', '.join(allowed)})")
    presets = raw.pop("presets", None) or {}
    if not isinstance(presets, dict):
        raise ConfigError("presets: must map a preset name to {dotted.key: value}")
    sweep = raw.pop("sweep", None) or {}
    blocks = sweep if isinstance(sweep, list) else [sweep]
    if not blocks or not all(isinstance(b, dict) for b in blocks):
        raise ConfigError("sweep: must map dotted keys to lists of values (or be a list of such mappings)")
    fixed = _apply_overrides(raw, blocks, _preset_pairs(presets, preset) + [parse_override(o) for o in overrides])
    out_dir = out or raw.pop("out", None) or f"results/{raw.get('name', default_name)}"
    raw.pop("out", None)
    if not isinstance(out_dir, str):
        raise ConfigError("out: must be a path string")
    return raw, sweep, blocks, fixed, out_dir

def _preset_pairs(presets: dict, preset: str | None) -> list[tuple[str, Any]]:
    """The dotted overrides of the preset named on the command line (none without ``--preset``)."""
    if preset is None:
        return []
    if preset not in presets:
        raise ConfigError(f"--preset {preset}: not defined in this spec (defined: {', '.join(presets) or 'none'})")
    if not isinstance(presets[preset], dict):
        raise ConfigError(f"presets.{preset}: must map dotted keys to values")
    return list(presets[preset].items())


def _apply_overrides(raw: dict, blocks: list[dict], pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Apply preset and ``--set`` pairs: ``sweep.*`` keys set a sweep axis, any other key is set in
    ``raw`` and removes the axis it fixes. Returns the fixed (non-sweep) pairs, which win over
    linked sweep values too."""
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
    return fixed


def _expand(raw: dict, block: dict, fixed: list[tuple[str, Any]]) -> list[Run]:
    """The validated runs of one sweep block: the product of its axes applied to ``raw``."""
    return [Run(validate_run(config, context=describe(swept)), swept) for config, swept in swept_configs(raw, block, fixed)]


def swept_configs(raw: dict, block: dict, fixed: list[tuple[str, Any]], *, lists_as_json: bool = False):
    """Each combination of one sweep block's axes applied to a copy of ``raw``, as (config, swept values);
    ``fixed`` (the user's --set / preset) wins over linked sweep values. ``lists_as_json`` writes list values
    into ``swept`` as JSON (an ecosystem's mixing rows), so they can be table columns."""
    axes = _sweep_axes(block)
    for combo in itertools.product(*[values for _, values in axes]):
        config, swept = copy.deepcopy(raw), {}
        for (key, _), value in zip(axes, combo):
            if isinstance(value, dict):
                patch = dict(value)
                label = patch.pop("label", None)
                _merge(config, patch)
                swept[key] = label if label is not None else json.dumps(patch, sort_keys=True)
            else:
                set_dotted(config, key, value)
                swept[key.split(".")[-1]] = json.dumps(value) if lists_as_json and isinstance(value, list) else value
        for key, value in fixed:
            set_dotted(config, key, value)
        yield config, swept


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
