"""Datasets: the built-in ones, found like every dataset through the ``madlab.datasets`` entry-point group.

:class:`~madlab.plugins.dataset.Dataset` is the base (``madlab.plugins.Dataset``); a dataset is
registered in a package's ``pyproject.toml`` and found by :func:`madlab.plugins.registry.get_dataset_class`.
"""
from __future__ import annotations

from madlab.plugins.dataset import Dataset
from madlab.plugins.registry import get_dataset_class


def open_dataset(section: dict) -> Dataset:
    """The dataset a config's ``dataset`` section names, built from the section's other keys."""
    cls = get_dataset_class(section["name"])
    return cls(cls.Params.model_validate({k: v for k, v in section.items() if k != "name"}))


__all__ = ["Dataset", "get_dataset_class", "open_dataset"]
