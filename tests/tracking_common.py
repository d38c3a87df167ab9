"""Shared by the tests/test_tracking_*.py files: a cheap Gaussian sweep and the table's points."""
from __future__ import annotations

import math

import pandas as pd

from conftest import gaussian_spec


def sweep_spec(generations: int = 4, **extra) -> dict:
    """Four cheap Gaussian runs (λ x seed), each ~10 ms a generation."""
    spec = gaussian_spec(generations=generations)
    spec["sweep"] = {"loop.bias": [1.0, 0.8], "seed": [0, 1]}
    spec.update(extra)
    return spec


def table_points(out) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """``{(run_id, metric): [(generation, value), ...]}`` from the results table (failed rows aside)."""
    table = pd.read_parquet(out / "metrics.parquet")
    table = table[table.metric != "failed"]
    points: dict = {}
    for row in table.sort_values(["run_id", "metric", "generation"]).itertuples():
        points.setdefault((row.run_id, row.metric), []).append((int(row.generation), float(row.value)))
    return points


def same_points(got: dict, want: dict) -> bool:
    """Equal keys, steps and values. The tracker stores the float the table holds (MLflow and W&B as
    doubles, TensorBoard's scalar as float32: compared within float32 rounding, 2^-23 relative)."""
    if got.keys() != want.keys():
        return False
    for key, expected in want.items():
        steps = [t for t, _ in got[key]]
        if steps != [t for t, _ in expected]:
            return False
        for (_, a), (_, b) in zip(got[key], expected):
            if not (math.isclose(a, b, rel_tol=2 ** -23, abs_tol=1e-30) or (math.isnan(a) and math.isnan(b))):
                return False
    return True
