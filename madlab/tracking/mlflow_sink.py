"""MLflow: one parent run per sweep (results folder), one nested run per madlab run.

Params are the run's resolved config (dotted keys), tags the scheme, λ, seed, generator, dataset
and sweep keys, metrics every table row with ``step = generation``. Runs are found again by
tags (``madlab.sweep_key``: the results folder; ``madlab.run_id``), so a resumed sweep goes on
in the same MLflow runs. Each ``log_batch`` carries the tag ``madlab.generation`` (the last
generation it completes) with the metrics: one request, one database transaction, so the tag
read back on resume says exactly which generations are in (SQLite, SQL databases, a server).
"""
from __future__ import annotations

import os
import time

from madlab.tracking.base import Points, RunInfo, SweepInfo
from madlab.tracking.targets import Target

SWEEP_KEY, RUN_ID, ROLE, LOGGED, ERROR = ("madlab.sweep_key", "madlab.run_id", "madlab.role", "madlab.generation",
                                          "madlab.error")
#: MLflow's limits per log_batch request (mlflow.utils.validation)
BATCH_ENTITIES, BATCH_PARAMS = 1000, 100
PARAM_CHARS, TAG_CHARS = 6000, 8000
#: an MLflow run status -> the madlab outcome it shows
FINAL = {"FINISHED": "ok", "FAILED": "failed"}


class MLflowSink:
    def __init__(self, target: Target, sweep: SweepInfo):
        # optional dependency (extra `mlflow`): imported only when a sweep tracks to MLflow
        # MLflow's usage telemetry stays off unless the user turned it on: madlab sends nothing of its own accord
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        if target.uri.startswith("file:"):  # the user asked for MLflow's legacy file store by name
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.target, self.sweep = target, sweep
        if target.uri.startswith("sqlite:///"):
            _create_sqlite_store(target.uri[len("sqlite:///"):])
        self.client = MlflowClient(tracking_uri=target.uri)
        self.experiment = target.options.get("experiment") or sweep.name
        self.children: dict[str, tuple[str, str]] = {}  # madlab run id -> (MLflow run id, status)
        self.outcomes: dict[str, str] = {}
        self.errored: set[str] = set()  # madlab runs whose MLflow run carries an error tag
        self.parent = self.experiment_id = None

    def start(self) -> dict[str, tuple[int, str | None]]:
        self.experiment_id = self._experiment()
        found = self.client.search_runs([self.experiment_id], f"tags.`{SWEEP_KEY}` = '{self.sweep.key}' "
                                                              f"and tags.`{ROLE}` = 'sweep'")
        if found:
            self.parent = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                self.client.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.client.create_run(self.experiment_id, run_name=self.sweep.name, tags={
                SWEEP_KEY: self.sweep.key, ROLE: "sweep", "madlab.results": self.sweep.results,
                "madlab.runs": str(len(self.sweep.runs))}).info.run_id
        logged, token = {}, None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent}'",
                                           max_results=1000, page_token=token)
            for run in page:
                madlab_id = run.data.tags.get(RUN_ID)
                if madlab_id:
                    self.children[madlab_id] = (run.info.run_id, run.info.status)
                    logged[madlab_id] = (int(run.data.tags.get(LOGGED, 0)), FINAL.get(run.info.status))
                    if run.info.status in FINAL:
                        self.outcomes[madlab_id] = FINAL[run.info.status]
                    if ERROR in run.data.tags:
                        self.errored.add(madlab_id)
            token = page.token
            if not token:
                return logged

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        artifacts = None
        if self.target.uri.startswith("sqlite:///"):  # beside the database, not in the working directory
            folder = os.path.dirname(os.path.abspath(self.target.uri[len("sqlite:///"):]))
            artifacts = "file://" + os.path.join(folder, "mlflow-artifacts")
        return self.client.create_experiment(self.experiment, artifact_location=artifacts)

    def _child(self, run: RunInfo) -> tuple[str, list]:
        """The MLflow run of a madlab run, created (nested, tagged) on first use; and the params a
        new one still needs (sent with its first metrics: one request instead of two)."""
        params = []
        if run.run_id not in self.children:
            from mlflow.entities import Param  # optional dependency, see __init__

            created = self.client.create_run(self.experiment_id, run_name=run.run_id[:250], tags={
                "mlflow.parentRunId": self.parent, RUN_ID: run.run_id, SWEEP_KEY: self.sweep.key,
                **{k: v[:TAG_CHARS] for k, v in run.tags().items()}})
            params = [Param(k, str(v)[:PARAM_CHARS]) for k, v in run.params().items()]
            self.children[run.run_id] = (created.info.run_id, "RUNNING")
        mlflow_id, status = self.children[run.run_id]
        if status != "RUNNING":  # a failed or interrupted run resumed
            self.client.update_run(mlflow_id, status="RUNNING")
            self.children[run.run_id] = (mlflow_id, "RUNNING")
        return mlflow_id, params

    def log(self, run: RunInfo, points: Points) -> None:
        from mlflow.entities import Metric, RunTag  # optional dependency, see __init__

        mlflow_id, params = self._child(run)
        if len(params) > BATCH_PARAMS // 2:  # too many to ride along with metrics
            params = self._log_params(mlflow_id, params)
        now = int(time.time() * 1000)
        chunk: list = []
        for t, metrics in points.items():
            batch = [Metric(name, value, now, t) for name, value in sorted(metrics.items())]
            if chunk and len(params) + len(chunk) + len(batch) >= BATCH_ENTITIES:
                self.client.log_batch(mlflow_id, metrics=chunk, params=params,
                                      tags=[RunTag(LOGGED, str(chunk[-1].step))])
                chunk, params = [], []
            chunk += batch
        self.client.log_batch(mlflow_id, metrics=chunk, params=params, tags=[RunTag(LOGGED, str(max(points)))])
        if self.target.options.get("grids"):
            for t in points:
                if run.grid(t):  # artifacts after the metrics: a resume re-sends a grid at most, never a point
                    self.client.log_artifact(mlflow_id, run.grid(t), artifact_path=f"grids/gen-{t:04d}")

    def _log_params(self, mlflow_id: str, params: list) -> list:
        for i in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(mlflow_id, params=params[i:i + BATCH_PARAMS])
        return []

    def end(self, run: RunInfo, status: str, error: str | None) -> None:
        mlflow_id, params = self._child(run)
        self._log_params(mlflow_id, params)  # a run that failed before its first generation
        if status == "failed":
            self.client.set_tag(mlflow_id, ERROR, (error or "failed")[:TAG_CHARS])
            self.errored.add(run.run_id)
        elif run.run_id in self.errored:
            self.client.delete_tag(mlflow_id, ERROR)  # failed before, finished now
            self.errored.discard(run.run_id)
        final = "FAILED" if status == "failed" else "FINISHED"
        self.client.set_terminated(mlflow_id, final)
        self.children[run.run_id] = (mlflow_id, final)
        self.outcomes[run.run_id] = status

    def close(self) -> None:
        if self.parent is None or len(self.outcomes) < len(self.sweep.runs):
            return  # an interrupted sweep's parent stays RUNNING; the resume finishes it
        failed = any(s == "failed" for s in self.outcomes.values())
        self.client.set_terminated(self.parent, "FAILED" if failed else "FINISHED")


def _create_sqlite_store(path: str) -> None:
    """Create a new SQLite store whole or not at all: MLflow builds its tables by a few seconds of
    migrations, and a driver killed half-way would leave a database it cannot open again. So the
    tables are built in a temporary file, renamed into place."""
    from mlflow import MlflowClient  # optional dependency, see MLflowSink

    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
