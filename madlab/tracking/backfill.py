"""``madlab track DIR --to NAME[=URI]``: an existing results folder into a tracker.

What is sent is what the table says (``DIR/metrics.parquet``, the source of truth) and each
run's ``runs/<id>/config.json``; the runs are the same tracker runs a live ``--track`` of that
folder feeds (found by the results folder and madlab's run id), so a back-fill after a live
sweep, or twice, adds nothing twice. A run whose table rows stop short of its generations is
sent what it has and left open.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from madlab.core.errors import MadlabError
from madlab.store.storage import CONFIG, Location
from madlab.store.table import TABLE, read_table
from madlab.tracking.base import FAILED_METRIC, RunInfo, SweepInfo
from madlab.tracking.dispatch import Dispatcher
from madlab.tracking.targets import parse_targets


@dataclass
class _Rows:
    """A run's rows as the dispatcher takes a finished run's (``Outcome``-shaped)."""
    run_id: str
    status: str  # ok | failed | partial
    error: str | None
    rows: list


def folder_runs(location: Location) -> tuple[SweepInfo, list[_Rows]]:
    """The sweep a results folder holds and each run's table rows."""
    if not location.exists("run.json") or not location.exists(TABLE):
        raise MadlabError(f"{location.uri}: not a madlab results folder (no run.json and {TABLE})")
    info = location.read_json("run.json")
    frame = read_table(location)
    runs, rows = [], []
    for run_id in info.get("runs", []):
        if not location.exists(f"runs/{run_id}/{CONFIG}"):
            continue
        record = location.read_json(f"runs/{run_id}/{CONFIG}")
        run = RunInfo(run_id, record["config"], record.get("swept", {}), record["config"]["loop"]["generations"],
                      location.path(f"runs/{run_id}") if location.local else None)
        runs.append(run)
        mine = frame[frame["run_id"] == run_id]
        failed = mine[mine["metric"] == FAILED_METRIC]
        if len(failed):
            status, error = "failed", failed["error"].iloc[0]
        else:
            complete = len(mine) and int(mine["generation"].max()) >= run.generations
            status, error = ("ok" if complete else "partial"), None
        rows.append(_Rows(run_id, status, error, mine[["generation", "metric", "value", "error"]].to_dict("records")
                          if "error" in mine else mine[["generation", "metric", "value"]].to_dict("records")))
    return SweepInfo(info.get("name", location.name), location.uri, tuple(runs)), rows


def track_folder(out_dir: str, entries: list[str], stream=None) -> int:
    """Send the folder to each tracker of ``entries`` (``NAME[=URI]``); exit status 0, or 1 if a tracker failed."""
    stream = stream or sys.stdout
    try:
        location = Location(out_dir)
    except (ValueError, ImportError) as exc:
        raise MadlabError(f"{out_dir}: {exc}") from None
    targets = parse_targets(list(entries), out_dir, where="--to")
    sweep, rows = folder_runs(location)
    dispatcher = Dispatcher(targets, sweep, {run.run_id: None for run in sweep.runs}, stream=stream,
                            results=out_dir)
    dispatcher.finished(rows)
    dispatcher.close(timeout=None)
    for feed in dispatcher.feeds:
        state = f"{feed.errors} error(s)" if feed.errors else "ok"
        print(f"[madlab] {feed.target.label()}: {len(sweep.runs)} run(s), "
              f"{sum(feed.logged.values())} generation(s) in the tracker: {state}", file=stream)
    return 1 if any(feed.errors for feed in dispatcher.feeds) else 0
