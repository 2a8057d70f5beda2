"""`--report-to mlflow`: the smoke model's run, found with mlflow.search_runs in the
default store (SQLite in ./mlruns): its params, per-epoch metrics, tables and artifact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.unit.trainer.tracking.conftest import TrackedRun
from trainer import report
from trainer.cli import main

pytestmark = pytest.mark.model


def _only_run(experiment: str = "support-router") -> mlflow.entities.Run:
    runs = mlflow.search_runs(
        experiment_names=[experiment], output_format="list", order_by=["start_time DESC"]
    )
    assert isinstance(runs, list) and len(runs) == 1
    return runs[0]


def test_the_smoke_run_shows_up_with_its_params_and_epochs(
    tracked_run: TrackedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked_run.tracking_uri)
    run = _only_run()
    manifest = json.loads((tracked_run.artifact / "manifest.json").read_text())
    metrics = json.loads((tracked_run.artifact / "metrics.json").read_text())
    assert run.info.run_name == "smoke" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["preset"] == "smoke" and params["base_model"] == "tiny"
    assert params["seed"] == "42" and params["train.lr"] == "0.003"
    assert params["train.epochs"] == "4" and params["backbone"] == "tiny"
    assert params["data.train.rows"] == "300" and params["data.val.rows"] == "60"
    assert params["data.fingerprint"] == manifest["training"]["data_fingerprint"]
    assert len(params["data.test_noisy.sha256"]) == 64
    assert run.data.tags["model.version"] == manifest["version"]

    client = MlflowClient(tracking_uri=tracked_run.tracking_uri)
    for name, key in (("train/loss", "train_loss"), ("val/intent_macro_f1", "intent_macro_f1")):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [row["epoch"] for row in metrics["history"]]
        assert [m.value for m in history] == pytest.approx([r[key] for r in metrics["history"]])
    noisy = next(r for r in metrics["results"] if r.get("split") == "test_noisy")
    figure = run.data.metrics["test_noisy/synthetic/action_macro_f1"]
    assert figure == pytest.approx(noisy["heads"]["action"]["macro_f1"])


def test_the_run_holds_the_evaluation_tables_and_the_artifact(tracked_run: TrackedRun) -> None:
    client = MlflowClient(tracking_uri=tracked_run.tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("support-router").experiment_id])
    # The artifacts sit beside the database, not under the test's working directory.
    root = tracked_run.mlruns / "support-router" / run.info.run_id / "artifacts"
    assert run.info.artifact_uri == root.as_uri()
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "artifact")}
    assert {"artifact/manifest.json", "artifact/model.safetensors", "artifact/model_card.md"} <= (
        logged
    )
    weights = (root / "artifact" / "model.safetensors").read_bytes()
    manifest = json.loads((tracked_run.artifact / "manifest.json").read_text())
    assert hashlib.sha256(weights).hexdigest() == manifest["weights_sha256"]

    metrics = json.loads((tracked_run.artifact / "metrics.json").read_text())
    heads = json.loads((root / "evaluation" / "heads.json").read_text())
    rows = report.head_rows(metrics["results"])
    assert heads["columns"] == list(rows[0])
    assert heads["data"] == [list(r.values()) for r in rows]
    tables = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "evaluation/heads.json", "type": "table"} in tables
    markdown = (root / "evaluation" / "report.md").read_text()
    assert report.summary_table(metrics["results"]) in markdown


def test_a_failed_training_ends_its_run_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    argv = ["train", "--preset", "smoke", "--out", str(tmp_path / "out"), "--report-to", "mlflow"]
    argv += ["--base-model", str(tmp_path / "no-such-backbone"), "--tracking-uri", uri]
    assert main([*argv, "--experiment", "broken", "--run-name", "doomed"]) == 1
    assert "no backbone found" in capsys.readouterr().err
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert run.info.run_name == "doomed" and run.info.status == "FAILED"
    assert run.data.params["base_model"] == str(tmp_path / "no-such-backbone")
