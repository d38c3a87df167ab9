"""The tidy results table: its schema, and its rows built from run folders.

One row per (run, generation, metric). Rows come only from published generations (DONE
records), so the table of a folder is a function of what is published: rebuilding it after a
crash, a resume or a retry gives the same rows, never duplicates. This module is the one place
that knows the columns; the runner writes the table and ``madlab report`` reads it with them.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from madlab.store.storage import TABLE, RunStore, location_of

#: the contract columns, in order (README "Results folder")
BASE_COLUMNS = ["sweep", "run_id", "generator", "dataset", "scheme", "bias", "n_real", "n_synthetic",
                "n_initial", "seed", "generation", "metric", "value"]
#: where a generation's training set came from
PROVENANCE = ["n_train_real", "n_train_synthetic", "synthetic_from"]
#: which feature extractor the image metrics of a generation used
EXTRACTOR = ["extractor", "extractor_hash"]
#: a failed run keeps its finished generations and gets one ``failed`` row
STATUS = ["status", "error"]
#: columns that describe a row or its provenance, never a sweep axis
NOT_AXES = {"sweep", "run_id", "seed", "generation", "metric", "value", *PROVENANCE, *EXTRACTOR, *STATUS}


def common_columns(run_id: str, config: dict, swept: dict, sweep_name: str, failure: dict | None) -> dict:
    """The columns every row of one run shares (the batched engine's records use them too)."""
    loop = config["loop"]
    common = {
        "sweep": sweep_name,
        "run_id": run_id,
        "generator": config["generator"]["name"],
        "dataset": config["dataset"]["name"],
        "scheme": loop["scheme"],
        "bias": float(loop["bias"]),
        "n_real": int(loop["n_real"]),
        "n_synthetic": int(loop["n_synthetic"]),
        "n_initial": loop.get("n_initial"),
        "seed": int(config["seed"]),
        "warm_start": bool(loop.get("warm_start", False)),
    }
    for column, value in swept.items():
        common.setdefault(column, value if not isinstance(value, (list, dict)) else json.dumps(value))
    common["status"] = "failed" if failure else "ok"
    common["error"] = failure["error"].splitlines()[0] if failure else None
    return common


def run_rows(run_dir, config: dict, swept: dict, sweep_name: str) -> list[dict]:
    """Rows of one run: every published generation, plus one ``failed`` row if it failed."""
    store = RunStore(run_dir)
    failure = store.failure()
    common = common_columns(store.name, config, swept, sweep_name, failure)
    rows = []
    for t in range(1, store.last_done() + 1):
        record = store.record(t)
        metadata = record.get("metadata", {})
        extra = {**record["provenance"], "generation": t, **{c: metadata.get(c) for c in EXTRACTOR}}
        for metric, value in sorted(record["metrics"].items()):
            rows.append({**common, **extra, "metric": metric, "value": value})
    if failure:
        rows.append({**common, "generation": failure["generation"], "metric": "failed", "value": float("nan"),
                     **{c: None for c in PROVENANCE}})
    return rows


def make_frame(rows: list) -> pd.DataFrame:
    """Rows -> the table, columns in contract order, rows sorted so equal results give equal files.

    ``rows`` holds row dicts and/or column blocks (``madlab.engine.batched.records.RowBlock``: a batched
    run's rows, the same rows in columns, so 10^5 of them need not become dicts)."""
    blocks = [r for r in rows if not isinstance(r, dict)]
    frame = pd.DataFrame([r for r in rows if isinstance(r, dict)])
    if blocks:
        frame = pd.concat([f for f in (frame, _block_frame(blocks)) if len(f.columns)], ignore_index=True)
    if frame.empty:
        frame = pd.DataFrame(columns=BASE_COLUMNS + PROVENANCE)
    front = [c for c in BASE_COLUMNS + PROVENANCE if c in frame.columns]
    frame = frame[front + [c for c in frame.columns if c not in front]]
    frame = frame.sort_values(["run_id", "generation", "metric"], kind="stable").reset_index(drop=True)
    for column in ("n_initial", "n_train_real", "n_train_synthetic"):
        if column in frame:
            frame[column] = pd.array(frame[column], dtype="Int64")
    return frame


def _block_frame(blocks) -> pd.DataFrame:
    names = list(dict.fromkeys(name for b in blocks for name in [*b.common, *b.columns]))
    lengths = np.array([len(b) for b in blocks], dtype=np.int64)
    columns = {}
    for name in names:
        if not any(name in b.columns for b in blocks):  # one value per run: repeat it, in C
            repeated = _repeated(name, [b.common.get(name) for b in blocks], lengths)
            if repeated is not None:
                columns[name] = repeated
                continue
        values = []
        for b in blocks:
            values += b.columns[name] if name in b.columns else [b.common.get(name)] * len(b)
        columns[name] = values
    return pd.DataFrame(columns)


def _repeated(name: str, values: list, lengths: np.ndarray):
    """``values[i]`` repeated ``lengths[i]`` times, as the array pandas would infer from the
    equivalent list (so the table's dtypes do not change): strings through an Arrow dictionary
    (a sweep of 10^6 rows has a few thousand distinct run ids; building 10^6 Python strings took
    most of a large table's write), numbers and booleans with ``np.repeat``. None when the values
    are mixed or missing (the caller builds the list)."""
    kinds = {type(v) for v in values}
    if kinds == {str}:

        unique, codes = np.unique(np.array(values, dtype=object), return_inverse=True)
        indices = pa.array(np.repeat(codes.astype(np.int32), lengths))
        strings = pa.DictionaryArray.from_arrays(indices, pa.array(unique.tolist(), pa.large_string()))
        return pd.array(strings.cast(pa.large_string()), dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    if len(kinds) == 1 and kinds <= {int, float, bool}:
        return np.repeat(np.array(values), lengths)
    return None


def write_table(out_dir, rows: list) -> str:
    """Write DIR/metrics.parquet atomically; returns where it is (a path or a URI)."""
    location = location_of(out_dir)
    location.write_frame(TABLE, make_frame(rows))
    return location.join(TABLE)


def read_table(out_dir) -> pd.DataFrame:
    return location_of(out_dir).read_frame(TABLE)
