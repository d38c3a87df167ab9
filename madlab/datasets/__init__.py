"""Datasets: the ``Dataset`` base, the registry, and the built-in datasets (each module registers its own)."""
from madlab.datasets import images, lowdim, text  # noqa: F401  (importing them registers the built-in datasets)
from madlab.datasets.base import Dataset
from madlab.datasets.registry import get_dataset_class, open_dataset, register_dataset

__all__ = ["Dataset", "register_dataset", "get_dataset_class", "open_dataset"]
