"""Reading a results folder, finished or still being written, local or copied from a cluster.

Everything here reads; nothing writes. A folder is usable when it has the tidy table
(``metrics.parquet``, written by ``madlab run``) or an effective-sample-size table
(``ess.parquet``, written by ``madlab run`` on an ess spec). Paths recorded in ``run.json``
are never followed (they may name another machine); runs and generations are found by
listing ``runs/`` and trusting only generation folders that hold a ``DONE`` record.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from madlab.errors import MadlabError
from madlab.samples import Samples

TABLE = "metrics.parquet"
ESS_TABLE = "ess.parquet"

#: Table columns that are never a sweep axis.
BASE_COLUMNS = ["sweep", "run_id", "generator", "dataset", "scheme", "bias", "n_real", "n_synthetic",
                "n_initial", "seed", "generation", "metric", "value"]
NOT_AXES = {"sweep", "run_id", "seed", "generation", "metric", "value", "status", "error",
            "n_train_real", "n_train_synthetic", "synthetic_from", "extractor", "extractor_hash"}


@dataclass
class Results:
    dir: Path
    table: pd.DataFrame | None
    ess: pd.DataFrame | None = None
    ess_curve: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)
    label: str = ""  # the sweep slice this view shows, "" for the whole folder

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
        from_configs = {(self.config(p.name).get("generator") or {}).get("name")
                        for p in (self.dir / "runs").glob("*") if p.is_dir()}
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
        return [" ".join(str(v) for v in row if v is not None and v == v) for row in pairs.itertuples(index=False)]

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
        keep = [c for c in self.table.columns if c not in ("generation", "metric", "value", "error",
                                                          "n_train_real", "n_train_synthetic", "synthetic_from")]
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
                       label=label)

    @cached_property
    def failures(self) -> list[tuple[str, str]]:
        found = {}
        if self.table is not None and "status" in self.table:
            failed = self.table[self.table["status"].astype(str) == "failed"]
            for row in failed.drop_duplicates("run_id").itertuples(index=False):
                found[row.run_id] = str(getattr(row, "error", "") or "")
        runs_dir = self.dir / "runs"
        if runs_dir.is_dir():
            for marker in runs_dir.glob("*/FAILED"):
                try:
                    found.setdefault(marker.parent.name, str(json.loads(marker.read_text()).get("error", "")))
                except (OSError, ValueError):
                    found.setdefault(marker.parent.name, "unreadable FAILED record")
        return sorted(found.items())

    # ------------------------------------------------------------------ per-run files
    def config(self, run_id: str) -> dict:
        path = self.dir / "runs" / run_id / "config.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data.get("config", data) if isinstance(data, dict) else {}

    def generations(self, run_id: str) -> list[int]:
        """Published generations of a run (folders holding DONE and samples)."""
        run_dir = self.dir / "runs" / run_id
        gens = []
        if run_dir.is_dir():
            for child in run_dir.iterdir():
                m = re.fullmatch(r"gen-(\d+)", child.name)
                if m and (child / "DONE").is_file() and (child / "samples.npz").is_file():
                    gens.append(int(m.group(1)))
        return sorted(gens) or self._batched.generations(run_id)

    @cached_property
    def _batched(self):
        from madlab.batched.records import BatchedSamples  # runs vectorised in batches keep records, not folders

        return BatchedSamples(self.dir)

    def samples(self, run_id: str, generation: int) -> Samples:
        if not (self.dir / "runs" / run_id / f"gen-{generation:04d}").is_dir():
            return self._batched.samples(run_id, generation)
        return load_samples(self.dir / "runs" / run_id / f"gen-{generation:04d}" / "samples.npz")


def load_samples(path) -> Samples:
    """samples.npz as the engine writes it: float ``x``, or 8-bit ``x_uint8`` for images."""
    with np.load(path, allow_pickle=False) as z:
        if "x_uint8" in z.files:
            x = z["x_uint8"].astype(np.float32) / 127.5 - 1.0
        else:
            x = z["x"].astype(np.float32)
        return Samples(x, z["y"] if "y" in z.files else None)


def open_results(results_dir) -> Results:
    """Read a results folder; a folder without a results table is a one-line MadlabError."""
    path = Path(results_dir)
    if not path.is_dir():
        raise MadlabError(f"{results_dir}: not a madlab results folder (no such directory)")
    info = {}
    if (path / "run.json").is_file():
        try:
            info = json.loads((path / "run.json").read_text())
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
    table = ess = curve = None
    if (path / TABLE).is_file():
        table = _read_parquet(path / TABLE, results_dir)
        missing = [c for c in ("run_id", "generation", "metric", "value") if c not in table.columns]
        if missing:
            raise MadlabError(f"{results_dir}: {TABLE} lacks column {missing[0]!r}: not a madlab results table")
    if (path / ESS_TABLE).is_file():
        ess = _read_parquet(path / ESS_TABLE, results_dir)
        if (path / "ess_curve.parquet").is_file():
            curve = _read_parquet(path / "ess_curve.parquet", results_dir)
    live = (path / "run.json").is_file() and (path / "runs").is_dir()
    if table is None and ess is None and not live:
        raise MadlabError(f"{results_dir}: not a madlab results folder (no metrics.parquet)")
    if live:
        table = _with_live_runs(path, table, str(info.get("name", path.name)))
    return Results(dir=path, table=table, ess=ess, ess_curve=curve, info=info)


def _with_live_runs(path: Path, table: pd.DataFrame | None, sweep: str) -> pd.DataFrame | None:
    """Add the generations published since the table was written (a sweep still running).

    The runner rewrites metrics.parquet only as whole runs finish; a run in progress has its
    generations in DONE records only. Those rows are rebuilt with the engine's own row
    builder, so they are the rows the final table will hold.
    """
    from madlab.storage import RunStore
    from madlab.table import run_rows

    in_table = table.groupby("run_id")["generation"].max().to_dict() if table is not None and len(table) else {}
    fresh, replaced = [], set()
    for run_dir in sorted((path / "runs").iterdir()):
        if not (run_dir / "config.json").is_file():
            continue
        done = RunStore(run_dir).last_done()
        if done == 0 or done <= in_table.get(run_dir.name, 0):
            continue
        try:
            record = json.loads((run_dir / "config.json").read_text())
            fresh += run_rows(run_dir, record.get("config", record), record.get("swept", {}), sweep)
        except (OSError, ValueError, KeyError):
            continue  # a run folder being created right now: next report picks it up
        replaced.add(run_dir.name)
    if not fresh:
        return table if table is not None else pd.DataFrame(columns=BASE_COLUMNS)
    extra = pd.DataFrame(fresh)
    if table is None:
        return extra
    return pd.concat([table[~table["run_id"].isin(replaced)], extra], ignore_index=True)


def _read_parquet(path: Path, results_dir) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise MadlabError(f"{results_dir}: {path.name} is not a readable parquet table ({type(exc).__name__})") from None
