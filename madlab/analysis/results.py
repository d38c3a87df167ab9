"""Reading a results folder, finished or still being written, local or copied from a cluster.

Everything here reads; nothing writes. A folder is usable when it has the tidy table
(``metrics.parquet``, written by ``madlab run``) or an effective-sample-size table
(``ess.parquet``, written by ``madlab run`` on an ess spec). Paths recorded in ``run.json``
are never followed (they may name another machine); runs and generations are found by
listing ``runs/`` and trusting only generation folders that hold a ``DONE`` record.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from madlab.core.errors import MadlabError
from madlab.core.samples import Samples
from madlab.engine.batched.records import BatchedSamples
from madlab.store.storage import (CONFIG, ESS_CURVE, ESS_TABLE, FAILED, RUN_INFO, RUNS, Location, RunStore, last_done,
                                  run_folder)
from madlab.store.table import BASE_COLUMNS, NOT_AXES, PROVENANCE, TABLE, run_rows
from madlab.store.tokenizer_file import TOKENIZER_FILE


@dataclass
class Results:
    dir: Path
    table: pd.DataFrame | None
    ess: pd.DataFrame | None = None
    ess_curve: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)
    label: str = ""  # the sweep slice this view shows, "" for the whole folder
    location: Location | None = None  # where the folder is read from (default: ``dir``)

    def __post_init__(self):
        if self.location is None:
            self.location = Location(self.dir)

    # ------------------------------------------------------------------ provenance
    @property
    def name(self) -> str:
        if self.info.get("name"):
            return str(self.info["name"])
        if self.table is not None and "sweep" in self.table and self.table["sweep"].notna().any():
            return str(self.table["sweep"].dropna().iloc[0])
        spec = self.info.get("spec") or self.info.get("config")
        return Path(str(spec)).stem if spec else self.dir.name

    @property
    def title(self) -> str:
        return f"{self.name} [{self.label}]" if self.label else self.name

    @property
    def command(self) -> str:
        cmd = self.info.get("command") or self.info.get("argv") or ""
        return " ".join(map(str, cmd)) if isinstance(cmd, (list, tuple)) else str(cmd)

    @property
    def spec(self) -> str:
        return str(self.info.get("spec") or self.info.get("config") or "unknown")

    @property
    def date(self) -> str:
        created, updated = self.info.get("created") or self.info.get("date"), self.info.get("updated")
        if created and updated and updated != created:
            return f"{created} (updated {updated})"
        return str(created or updated or "unknown")

    @property
    def scale(self) -> str:
        """The preset a folder was run at: recorded, or read off the command line."""
        if self.info.get("preset"):
            return str(self.info["preset"])
        try:
            words = shlex.split(self.command)
        except ValueError:
            words = self.command.split()
        for i, word in enumerate(words):
            if word == "--preset" and i + 1 < len(words):
                return words[i + 1]
            if word.startswith("--preset="):
                return word.split("=", 1)[1]
        sets = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--set"]
        if sets:
            return "custom: " + " ".join(sets)
        return "spec defaults" if self.command else "unknown"

    @property
    def generators(self) -> list[str]:
        if self.table is not None and "generator" in self.table and self.table["generator"].notna().any():
            return sorted(self.table["generator"].dropna().astype(str).unique())
        from_configs = {(self.config(run_id).get("generator") or {}).get("name") for run_id in self.run_ids}
        if from_configs - {None}:
            return sorted(from_configs - {None})
        if self.ess is not None:
            return ["gaussian (Monte Carlo)"]
        return []

    @property
    def extractors(self) -> list[str]:
        if self.table is None or "extractor" not in self.table:
            return []
        cols = ["extractor"] + (["extractor_hash"] if "extractor_hash" in self.table else [])
        pairs = self.table[cols].dropna(subset=["extractor"]).drop_duplicates()
        return [" ".join(str(v) for v in row if v is not None and v == v and str(v)) for row in pairs.itertuples(index=False)]

    # ------------------------------------------------------------------ the table
    @cached_property
    def values(self) -> pd.DataFrame:
        """Rows with a finite value (failed runs and placeholders dropped)."""
        if self.table is None:
            return pd.DataFrame(columns=["run_id", "generation", "metric", "value"])
        t = self.table
        if "status" in t:
            t = t[t["status"].fillna("ok").astype(str) != "failed"]
        t = t[t["metric"].notna()]
        t = t[np.isfinite(pd.to_numeric(t["value"], errors="coerce"))]
        return t.assign(value=pd.to_numeric(t["value"]), generation=t["generation"].astype(int))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.values["metric"].astype(str)))

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: its run_id and the value of every column that is constant within it."""
        if self.table is None or self.table.empty:
            return pd.DataFrame(columns=["run_id"])
        keep = [c for c in self.table.columns if c not in ("generation", "metric", "value", "error", *PROVENANCE)]
        return self.table[keep].drop_duplicates("run_id").reset_index(drop=True)

    @cached_property
    def axes(self) -> list[str]:
        """Columns that vary between runs (seed excluded): the sweep axes a plot must separate.

        A column fixed by the columns already kept is dropped (a linked sweep axis ``model``
        decides ``generator`` and ``dataset``), so plots do not repeat one distinction thrice.
        """
        runs = self.runs.astype(str)
        varying = [c for c in runs.columns if c not in NOT_AXES and runs[c].nunique(dropna=False) > 1]
        base = ["bias", "scheme"]
        swept = [c for c in varying if c not in BASE_COLUMNS]
        order = [c for c in base if c in varying] + swept + [c for c in varying if c not in base and c not in swept]
        kept: list[str] = []
        for col in order:
            if kept and runs.groupby(kept)[col].nunique(dropna=False).max() <= 1:
                continue
            kept.append(col)
        return kept

    def subset(self, run_ids, label: str = "") -> "Results":
        """The same folder restricted to some runs (one slice of a sweep)."""
        keep = set(run_ids)
        table = None if self.table is None else self.table[self.table["run_id"].isin(keep)]
        return Results(dir=self.dir, table=table, ess=self.ess, ess_curve=self.ess_curve, info=self.info,
                       label=label, location=self.location)

    @cached_property
    def failures(self) -> list[tuple[str, str]]:
        found = {}
        if self.table is not None and "status" in self.table:
            failed = self.table[self.table["status"].astype(str) == "failed"]
            for row in failed.drop_duplicates("run_id").itertuples(index=False):
                found[row.run_id] = str(getattr(row, "error", "") or "")
        for rel in self.location.glob(f"{RUNS}/*/{FAILED}"):
            run_id = rel.split("/")[1]
            try:
                found.setdefault(run_id, str(self.run(run_id).failure().get("error", "")))
            except (OSError, ValueError, AttributeError):
                found.setdefault(run_id, "unreadable FAILED record")
        return sorted(found.items())

    # ------------------------------------------------------------------ per-run files
    @property
    def run_ids(self) -> list[str]:
        """Runs with a config.json record in the folder."""
        return [rel.split("/")[1] for rel in self.location.glob(f"{RUNS}/*/{CONFIG}")]

    def run(self, run_id: str) -> RunStore:
        return RunStore(self.location.child(run_folder(run_id)))

    def config(self, run_id: str) -> dict:
        try:
            data = self.run(run_id).config()
        except (OSError, ValueError):
            return {}
        return data.get("config", data) if isinstance(data, dict) else {}

    def generations(self, run_id: str) -> list[int]:
        """Published generations of a run (DONE present; DONE is written after the samples), or of a
        batched run the generations its batch records kept samples of."""
        return self.run(run_id).generations() or self._batched.generations(run_id)

    @cached_property
    def _batched(self):
        return BatchedSamples(self.dir)  # runs vectorised in batches keep records, not folders

    def batched_reference(self, run_id: str) -> dict[str, float]:
        """The real-vs-real metrics a batched run's generation-1 record holds ({} for other runs)."""
        return self._batched.real_vs_real(run_id)

    @cached_property
    def real_vs_real(self) -> dict[str, tuple[dict, int]]:
        """Per run: (its real-vs-real metrics, how many rows that sample shares with the reference set),
        from generation 1's DONE record, else a batched run's records (unlimited sources: nothing shared).
        Read once per folder (or view): the summary and every metric panel ask for it."""
        found = {}
        for run_id in self.runs["run_id"] if "run_id" in self.runs else []:
            run_id = str(run_id)
            try:
                metadata = self.run(run_id).record(1).get("metadata") or {}
                found[run_id] = (metadata.get("real_vs_real") or {}, int(metadata.get("real_vs_real_shared") or 0))
            except (OSError, ValueError, KeyError):  # no generation-1 folder: a batched run's records, or none yet
                found[run_id] = (self.batched_reference(run_id), 0)
        return found

    def samples(self, run_id: str, generation: int) -> Samples:
        if generation not in self.run(run_id).generations():
            return self._batched.samples(run_id, generation)
        return self.run(run_id).samples(generation)


def open_results(results_dir) -> Results:
    """Read a results folder; a folder without a results table is a one-line MadlabError."""
    location = Location(results_dir)
    if not location.fs.isdir(""):
        raise MadlabError(f"{results_dir}: not a madlab results folder (no such directory)")
    info = {}
    if location.exists(RUN_INFO):
        try:
            info = location.read_json(RUN_INFO)
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
    table = ess = curve = None
    if location.exists(TABLE):
        table = _read_parquet(location, TABLE, results_dir)
        missing = [c for c in ("run_id", "generation", "metric", "value") if c not in table.columns]
        if missing:
            raise MadlabError(f"{results_dir}: {TABLE} lacks column {missing[0]!r}: not a madlab results table")
    if location.exists(ESS_TABLE):
        ess = _read_parquet(location, ESS_TABLE, results_dir)
        if location.exists(ESS_CURVE):
            curve = _read_parquet(location, ESS_CURVE, results_dir)
    live = location.exists(RUN_INFO) and location.fs.isdir(RUNS)
    if table is None and ess is None and not live:
        raise MadlabError(f"{results_dir}: not a madlab results folder (no metrics.parquet)")
    if live:
        table = _with_live_runs(location, table, str(info.get("name", location.name)))
    return Results(dir=Path(location.path()), table=table, ess=ess, ess_curve=curve, info=info, location=location)


def _with_live_runs(location: Location, table: pd.DataFrame | None, sweep: str) -> pd.DataFrame | None:
    """Add the generations published since the table was written (a sweep still running).

    The runner rewrites metrics.parquet only as whole runs finish; a run in progress has its
    generations in DONE records only. Those rows are rebuilt with the engine's own row
    builder, so they are the rows the final table will hold.
    """
    in_table = table.groupby("run_id")["generation"].max().to_dict() if table is not None and len(table) else {}
    fresh, replaced = [], set()
    for run_id, done in sorted(last_done(location, runs=RUNS).items()):
        if done <= in_table.get(run_id, 0):
            continue
        store = RunStore(location.child(run_folder(run_id)))
        try:
            record = store.config()
            fresh += run_rows(store.location, record.get("config", record), record.get("swept", {}), sweep)
        except (OSError, ValueError, KeyError):
            continue  # a run folder being created right now: next report picks it up
        replaced.add(run_id)
    if not fresh:
        return table if table is not None else pd.DataFrame(columns=BASE_COLUMNS)
    extra = pd.DataFrame(fresh)
    if table is None:
        return extra
    return pd.concat([table[~table["run_id"].isin(replaced)], extra], ignore_index=True)


def _read_parquet(location: Location, rel: str, results_dir) -> pd.DataFrame:
    try:
        return location.read_frame(rel)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise MadlabError(f"{results_dir}: {rel} is not a readable parquet table ({type(exc).__name__})") from None


def is_text_run(results: Results, run_id: str) -> bool:
    """Whether the run is of the ``tokens`` kind (its folder holds the run's tokenizer)."""
    return results.run(run_id).location.exists(TOKENIZER_FILE)


def has_text_runs(results: Results) -> bool:
    """Whether the folder (or view) holds any run of the ``tokens`` kind."""
    return any(is_text_run(results, str(run_id)) for run_id in results.runs.get("run_id", []))
