"""Folders written by Hugging Face ``datasets``' ``save_to_disk``, read with pyarrow alone (the text
corpora and the image folders both use it, so the ``datasets`` package is not needed to run on them)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from madlab.core.errors import DatasetError


def saved_splits(root: Path) -> list[str] | None:
    """The splits of a saved DatasetDict, or None for a single saved Dataset."""
    if (root / "dataset_dict.json").is_file():
        return list(json.loads((root / "dataset_dict.json").read_text()).get("splits", []))
    return None


def read_saved_split(root: Path, split: str | None, columns: list[str], *, key: str = "dataset"):
    """The ``columns`` of one split of a ``save_to_disk`` folder as a pyarrow Table, or None when
    the folder is a DatasetDict without that split. ``key`` names the config key a missing column
    is reported under."""
    splits = saved_splits(root)
    if splits is not None:
        if split not in splits:
            return None
        root = root / split
    try:
        state = json.loads((root / "state.json").read_text())
        files = [root / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise DatasetError(f"dataset.root: {root} is not a Hugging Face datasets folder "
                           f"(no readable state.json or dataset_dict.json)") from None
    tables = []
    for path in files:
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise DatasetError(f"{path}: unreadable Arrow file ({exc})") from None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DatasetError(f"{key}: {path} has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
        tables.append(table.select(columns))
    return pa.concat_tables(tables)
