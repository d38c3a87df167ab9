"""Dataset registry: name -> Dataset class, validated on registration (torch-fidelity style)."""
from __future__ import annotations

from madlab.datasets.base import Dataset
from madlab.errors import ConfigError

_DATASETS: dict[str, type[Dataset]] = {}


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise TypeError(f"{cls!r} is not a madlab.datasets.Dataset subclass")
    if cls.name in _DATASETS and _DATASETS[cls.name] is not cls:
        raise ValueError(f"dataset {cls.name!r} registered twice")
    _DATASETS[cls.name] = cls
    return cls


def dataset_names() -> list[str]:
    _load_builtin()
    return sorted(_DATASETS)


def get_dataset_class(name: str) -> type[Dataset]:
    _load_builtin()
    try:
        return _DATASETS[name]
    except KeyError:
        raise ConfigError(f"dataset.name: unknown dataset {name!r} (known: {', '.join(sorted(_DATASETS))})") from None


def open_dataset(section: dict) -> Dataset:
    """The dataset a config's ``dataset`` section names, built from the section's other keys."""
    cls = get_dataset_class(section["name"])
    return cls(cls.Params.model_validate({k: v for k, v in section.items() if k != "name"}))


def _load_builtin() -> None:
    # Imported lazily so that `import madlab` stays cheap; each module registers its datasets.
    from madlab.datasets import hf_images, images, lowdim, text, torchvision_sets  # noqa: F401


__all__ = ["Dataset", "register_dataset", "get_dataset_class", "dataset_names", "open_dataset"]
