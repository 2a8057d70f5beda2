"""`--report-to mlflow`: one MLflow run per training, through MlflowClient (no global
active run, so nothing leaks between runs in one process)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

from trainer import report
from trainer.tracking import summary
from trainer.tracking.reporter import Where
from worker.model.artifact import read_manifest

SQLITE = "sqlite:///"
# MLflow refuses a param value longer than this (mlflow.utils.validation).
MAX_PARAM_CHARS = 6000
# The run tag that lists its table artifacts: the UI's table view reads it
# (MlflowClient.log_table sets it, but needs pandas, which the extra leaves out).
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
TABLES = {
    "evaluation/heads.json": report.head_rows,
    "evaluation/datasets.json": summary.dataset_rows,
}


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its runs' artifacts: for a SQLite store, a folder
    beside the database named for the experiment. MLflow's default would be ./mlruns
    under whatever the working directory is; a server's store decides for itself."""
    if not tracking_uri.startswith(SQLITE):
        return None
    database = Path(tracking_uri[len(SQLITE) :]).resolve()
    return (database.parent / re.sub(r"[^A-Za-z0-9._-]+", "-", experiment)).as_uri()


class MlflowRun:
    """A reporter (trainer.tracking.reporter.Reporter) that logs to one MLflow run."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    @classmethod
    def start(cls, where: Where) -> MlflowRun:
        if where.tracking_uri.startswith(SQLITE):
            # SQLite creates the database file, not the folder it sits in.
            Path(where.tracking_uri[len(SQLITE) :]).parent.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=where.tracking_uri)
        experiment = client.get_experiment_by_name(where.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                where.experiment, artifact_location(where.tracking_uri, where.experiment)
            )
        )
        run = client.create_run(experiment_id, run_name=where.run_name)
        print(
            f"mlflow: run {run.info.run_id} ({where.run_name}) in experiment "
            f"{where.experiment!r} at {where.tracking_uri}",
            flush=True,
        )
        return cls(client, run.info.run_id)

    def params(self, values: dict[str, str]) -> None:
        params = [Param(k, v[:MAX_PARAM_CHARS]) for k, v in values.items()]
        self.client.log_batch(self.run_id, params=params)

    def epoch(self, row: dict[str, Any]) -> None:
        self._scalars(summary.epoch_scalars(row), step=int(row["epoch"]))

    def finish(self, artifact: Path, metrics: dict[str, Any]) -> None:
        manifest = read_manifest(artifact)
        self.client.log_batch(
            self.run_id,
            params=[
                Param("backbone", manifest.backbone.source),
                Param("best_epoch", str(manifest.training.best_epoch)),
            ],
        )
        self.client.set_tag(self.run_id, "model.name", manifest.name)
        self.client.set_tag(self.run_id, "model.version", manifest.version)
        # the tag MLflow's UI shows as the run's source commit
        self.client.set_tag(self.run_id, "mlflow.source.git.commit", manifest.training.git_commit)
        self._scalars(summary.final_scalars(metrics), step=0)
        for path, rows in TABLES.items():
            self.client.log_dict(self.run_id, summary.columns(rows(metrics["results"])), path)
        tables = [{"path": path, "type": "table"} for path in TABLES]
        self.client.set_tag(self.run_id, LOGGED_ARTIFACTS_TAG, json.dumps(tables))
        self.client.log_text(
            self.run_id, summary.evaluation_markdown(metrics), "evaluation/report.md"
        )
        self.client.log_artifacts(self.run_id, str(artifact), "artifact")

    def close(self, *, failed: bool) -> None:
        status = RunStatus.FAILED if failed else RunStatus.FINISHED
        self.client.set_terminated(self.run_id, RunStatus.to_string(status))

    def _scalars(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)
