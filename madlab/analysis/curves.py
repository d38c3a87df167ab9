"""From a results folder to arms and per-seed curves: the input every analysis shares.

An *arm* is one sweep configuration (every swept setting fixed) over its seeds; its columns
are the folder's sweep axes (``Results.axes``: the seed excluded). A *curve* is one run's
values of one metric over generations 1..T; an arm's curves of one metric form a
seeds x generations matrix (:class:`Curves`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from madlab.analysis.results import open_results
from madlab.core.errors import MadlabError
from madlab.store.table import NOT_AXES


@dataclass
class Curves:
    """One arm's curves of one metric: ``values[i, j]`` is seed ``seeds[i]`` at ``generations[j]``."""

    seeds: np.ndarray
    generations: np.ndarray
    values: np.ndarray
    run_ids: list

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(axis=0)

    def at(self, generation: int) -> np.ndarray:
        hits = np.flatnonzero(self.generations == generation)
        if not len(hits):
            raise MadlabError(f"generation {generation}: not run (this arm has generations "
                              f"{int(self.generations[0])}..{int(self.generations[-1])})")
        return self.values[:, hits[0]]

    def take(self, seeds) -> "Curves":
        """The curves of the given seeds, in that order."""
        index = {s: i for i, s in enumerate(self.seeds.tolist())}
        rows = [index[s] for s in seeds]
        return Curves(np.asarray(seeds), self.generations, self.values[rows], [self.run_ids[i] for i in rows])


def load(source):
    """(tidy frame of finite values, arm columns) of a results folder, a ``Results`` or a tidy frame.

    A path is opened with the results reader (``open_results``: failed runs' placeholder rows
    dropped, a sweep still being written included)."""
    if isinstance(source, pd.DataFrame):
        values = source[np.isfinite(pd.to_numeric(source["value"], errors="coerce"))]
        return values.assign(generation=values["generation"].astype(int)), varying_columns(values)
    if not hasattr(source, "values"):
        source = open_results(source)
    values = source.values
    if not len(values):
        raise MadlabError(f"{source.dir}: the results table has no finished generations yet")
    return values, list(source.axes)


def varying_columns(values: pd.DataFrame) -> list[str]:
    """Columns constant within a run that vary between runs (seed and row columns excluded)."""
    runs = values.drop_duplicates("run_id")
    return [c for c in runs.columns if c not in NOT_AXES and c != "warm_start"
            and values.groupby("run_id")[c].nunique(dropna=False).max() <= 1
            and runs[c].astype(str).nunique() > 1]


def select(values: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    """Rows whose columns equal ``where``'s values (compared as text, so 0.8 matches "0.8" and 0.80)."""
    for column, wanted in (where or {}).items():
        if column not in values.columns:
            raise MadlabError(f"--where {column}=...: no such column (columns: {', '.join(map(str, values.columns))})")
        values = values[_matches(values[column], wanted)]
        if values.empty:
            raise MadlabError(f"--where {column}={wanted}: no runs have it")
    return values


def _matches(column: pd.Series, wanted) -> pd.Series:
    number = pd.to_numeric(pd.Series([wanted]), errors="coerce").iloc[0]
    as_number = pd.to_numeric(column, errors="coerce")
    if pd.notna(number) and as_number.notna().any():
        return np.isclose(as_number, float(number), rtol=1e-9, atol=0) & as_number.notna()
    return column.astype(str) == str(wanted)


def arm_curves(rows: pd.DataFrame) -> Curves:
    """The curves of one arm and metric: every run cut to the generations all of them reached."""
    wide = rows.pivot_table(index=["seed", "run_id"], columns="generation", values="value", aggfunc="first")
    wide = wide.dropna(axis=1, how="any")  # a shorter (failed or still running) run limits the arm
    wide = wide.sort_index()
    if wide.index.get_level_values("seed").duplicated().any():
        raise MadlabError("two runs of one arm share a seed: a sweep axis is missing from the arm columns")
    return Curves(wide.index.get_level_values("seed").to_numpy(), wide.columns.to_numpy(dtype=int),
                  wide.to_numpy(dtype=float), list(wide.index.get_level_values("run_id")))


def arms(values: pd.DataFrame, arm_columns: list[str]):
    """Yield (arm key dict, that arm's rows) in a stable order."""
    if not arm_columns:
        yield {}, values
        return
    for key, rows in values.groupby(arm_columns, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(arm_columns, key)), rows
