"""What a run folder records about how its numbers were made, and the resume rule built on it.

Each ``runs/<run_id>/config.json`` holds the run's resolved config (the generator's parameters
as it uses them, preset expanded: ``config.generator_resolved``), the swept values, and the
versions of madlab and of the libraries that determine results, and the CPU kernels (native, or
portable: :mod:`madlab.portable`). The run id hashes the resolved
config, so editing a preset table gives new run ids; a resume into a folder whose stored record
differs from the current one (in the config or in a result-determining library version) is
refused with one line saying what differs, before anything is written, so one run never mixes
two training budgets or two library versions.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from madlab.errors import ConfigError
from madlab.portable import compute_differences, compute_record

#: libraries whose version changes the numbers a run produces (compared on resume)
RESULT_LIBRARIES = ("torch", "diffusers", "normflows", "numpy", "scipy", "scikit-learn", "torch-fidelity")


@lru_cache(maxsize=None)
def library_versions() -> dict[str, str]:
    """madlab's version and the installed versions of :data:`RESULT_LIBRARIES` (read from package
    metadata: nothing is imported)."""
    out = {}
    for name in ("madlab",) + RESULT_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def config_record(config: dict, swept: dict) -> dict:
    """The content of a run's ``config.json``."""
    return {"config": config, "swept": swept, "versions": library_versions(), "compute": compute_record()}


def differences(stored: dict, current: dict) -> list[str]:
    """Human-readable differences between two ``config.json`` records, on what determines results:
    the config (resources and the metrics device aside) and the result-determining library versions
    (madlab's own version is recorded but not compared: it does not change with every edit)."""
    out: list[str] = []
    _diff(_determining(stored.get("config", {})), _determining(current.get("config", {})), "", out)
    old_v, new_v = stored.get("versions"), current.get("versions") or {}
    if old_v is not None:
        for lib in RESULT_LIBRARIES:
            if lib in old_v and old_v.get(lib) != new_v.get(lib):
                out.append(f"{lib} {old_v.get(lib)} -> {new_v.get(lib)}")
    out += compute_differences(stored.get("compute"), current.get("compute") or {"kernels": "native"})
    return out


def check_resume(run_id: str, stored: dict, current: dict) -> None:
    """ConfigError if the stored record of ``run_id`` differs from the current one."""
    diff = differences(stored, current)
    if diff:
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise ConfigError(f"runs/{run_id}: cannot resume, the stored run differs from this one: "
                          f"{'; '.join(diff[:3])}{more} (use another --out, or delete that run folder)")


def _determining(config: dict) -> dict:
    config = {k: v for k, v in config.items() if k != "resources"}
    if isinstance(config.get("metrics"), dict):
        config["metrics"] = {k: v for k, v in config["metrics"].items() if k != "device"}
    return config


def _diff(old, new, where: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), f"{where}.{key}" if where else str(key), out)
    elif old != new:
        out.append(f"{where} {json.dumps(old)} -> {json.dumps(new)}")
