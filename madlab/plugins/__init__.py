"""Everything a plugin author needs, under public names.

    from madlab.plugins import Generator, Params, Samples, TorchGenerator   # generators
    from madlab.plugins import Curator, CuratorParams, Curated              # curators
    from madlab.plugins import Dataset                                      # datasets

Plugins are found through entry-point groups (:mod:`madlab.plugins.registry`); their contract
kits are in :mod:`madlab.testing`.

The names are loaded on first use (PEP 562 ``__getattr__``) rather than imported here: this
package is also what ``madlab generators`` reads, without importing numpy, pydantic or torch
(:mod:`madlab.plugins.index`; tests/test_plugin_index.py holds it under a second of CPU).
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "Generator": "madlab.plugins.generator", "Params": "madlab.plugins.generator",
    "Samples": "madlab.core.samples", "ConfigError": "madlab.core.errors", "RunFailed": "madlab.core.errors",
    "TorchGenerator": "madlab.plugins.torch", "NeuralParams": "madlab.plugins.torch",
    "BatchedGenerator": "madlab.plugins.batched",
    "Curator": "madlab.plugins.curator", "CuratorParams": "madlab.plugins.curator", "Curated": "madlab.plugins.curator",
    "Dataset": "madlab.plugins.dataset",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'madlab.plugins' has no attribute {name!r}")
