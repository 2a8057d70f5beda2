"""The learning loop end to end on the smoke preset, as an operator runs it: `train --from`
a smoke artifact on a small feedback data set, then `compare` the child with its parent.

Each command runs in a subprocess, as from a shell (the CLI configures process-wide
logging and threads).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.trainer import corrections_data
from trainer.cli import EXIT_REJECTED
from worker.model.artifact import load_artifact

pytestmark = pytest.mark.model

# Messages like the smoke preset's synthetic ones, and some it never saw.
TEXTS = {
    "refund_request": ("the zorblax kettle leaks, i want my money back", "refund my order"),
    "billing_issue": ("my invoice shows the quarvex fee twice", "why is my bill so high"),
    "account_access": ("the login page keeps rejecting my code", "i forgot my password"),
    "technical_problem": ("the app crashes when i open the wallet tab", "my card was declined"),
    "general_question": ("do you ship to norway", "what are your opening hours"),
}
ROWS = 60


def _feedback(directory: Path) -> Path:
    rows = []
    for i in range(ROWS):
        intent = list(TEXTS)[i % len(TEXTS)]
        text = f"{TEXTS[intent][i % 2]} ({i})"
        if i % 6 == 5:  # an agent who corrected the urgency and the action only
            rows.append(corrections_data.row(i, text, urgency="high", action="escalate_to_human"))
        else:
            rows.append(corrections_data.row(i, text, intent=intent))
    return corrections_data.write(directory, rows)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _tracking_uri(out: Path) -> str:
    """Where the child's training is tracked: an MLflow store of its own beside it."""
    return f"sqlite:///{out.parent / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def feedback(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _feedback(tmp_path_factory.mktemp("feedback") / "fb")


@pytest.fixture(scope="module")
def child(
    smoke_artifact: Path, feedback: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("child") / "child"
    tracking = ["--report-to", "mlflow", "--tracking-uri", _tracking_uri(out)]
    done = _cli(
        "train",
        "--from",
        str(smoke_artifact),
        "--feedback",
        str(feedback),
        "--out",
        str(out),
        *tracking,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_train_from_warm_starts_and_records_the_lineage(
    smoke_artifact: Path, feedback: Path, child: tuple[Path, str]
) -> None:
    out, stdout = child
    parent = load_artifact(smoke_artifact).manifest
    loaded = load_artifact(out)  # the worker's loader accepts it
    m = loaded.manifest
    assert m.lineage is not None
    assert (m.lineage.parent.name, m.lineage.parent.version) == (parent.name, parent.version)
    assert m.lineage.parent.content_hash == parent.weights_sha256 != m.weights_sha256
    fingerprint = json.loads((feedback / "manifest.json").read_text())["fingerprint"]
    assert m.lineage.feedback.fingerprint == fingerprint
    counts = m.lineage.counts
    assert counts.feedback_held_back == math.ceil(ROWS * 0.2)
    assert counts.feedback_train + counts.feedback_validation == ROWS - counts.feedback_held_back
    assert counts.feedback_train > 0 and counts.replay_train > 0
    # The newest fifth was never used: its first row is later than the last one used.
    newest = sorted(json.loads(line)["at"] for line in (feedback / "dataset.jsonl").open())
    cut = datetime.fromisoformat(newest[ROWS - counts.feedback_held_back])
    assert m.lineage.feedback.trained_until is not None
    assert datetime.fromisoformat(m.lineage.feedback.trained_until) < cut
    # Same architecture as the parent, its data described as the parent's.
    assert (m.pooling, m.max_length, m.casing_marker) == (
        parent.pooling,
        parent.max_length,
        parent.casing_marker,
    )
    assert (m.training.preset, m.training.sources) == ("smoke", ["synthetic"])
    assert m.ood.classes > parent.ood.classes  # the corrections' intents joined the scorer
    assert "held back" in stdout and "wall time" in stdout
    assert "fine-tuned from" in (out / "model_card.md").read_text()


def test_a_fine_tune_is_tracked_with_its_parent_and_feedback(
    smoke_artifact: Path, feedback: Path, child: tuple[Path, str]
) -> None:
    from mlflow import MlflowClient

    out, _ = child
    client = MlflowClient(tracking_uri=_tracking_uri(out))
    [run] = client.search_runs([client.get_experiment_by_name("support-router").experiment_id])
    parent = load_artifact(smoke_artifact).manifest
    fingerprint = json.loads((feedback / "manifest.json").read_text())["fingerprint"]
    assert run.info.status == "FINISHED" and run.info.run_name == "child"
    assert run.data.params["parent"] == f"{parent.name} {parent.version}"
    assert run.data.params["feedback.fingerprint"] == fingerprint
    epochs = json.loads((out / "metrics.json").read_text())["history"]
    history = client.get_metric_history(run.info.run_id, "val/action_macro_f1")
    assert [m.step for m in history] == [row["epoch"] for row in epochs]


def test_compare_prints_the_table_and_a_verdict_with_its_exit_code(
    smoke_artifact: Path, feedback: Path, child: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = child
    report = tmp_path / "compare.json"
    done = _cli(
        "compare",
        "--current",
        str(smoke_artifact),
        "--candidate",
        str(out),
        "--feedback",
        str(feedback),
        "--json",
        str(report),
    )
    assert done.returncode in (0, EXIT_REJECTED), done.stderr[-3000:]
    held = math.ceil(ROWS * 0.2)
    assert f"the newest {held} of {ROWS} corrections" in done.stdout
    assert "| set | n | measure | current | candidate | change |" in done.stdout
    assert f"| recent traffic | {held} | intent accuracy (" in done.stdout
    assert "| synthetic test_noisy | 60 | intent accuracy |" in done.stdout
    assert "| synthetic test_clean |" in done.stdout
    payload = json.loads(report.read_text())
    promote = payload["verdict"]["promote"]
    assert done.returncode == (0 if promote else EXIT_REJECTED)
    expected = "verdict: PROMOTE: " if promote else f"verdict: REJECT (exit {EXIT_REJECTED}): "
    assert expected in done.stdout
    assert [s["kind"] for s in payload["sets"]] == ["recent", "fixed", "fixed"]


def test_a_model_is_never_promoted_over_itself(smoke_artifact: Path, feedback: Path) -> None:
    done = _cli(
        "compare",
        "--current",
        str(smoke_artifact),
        "--candidate",
        str(smoke_artifact),
        "--feedback",
        str(feedback),
    )
    assert done.returncode == EXIT_REJECTED, done.stderr[-3000:]
    assert "recent traffic: mean accuracy" in done.stdout and "not higher" in done.stdout


def test_architecture_flags_are_refused_with_from(smoke_artifact: Path, tmp_path: Path) -> None:
    done = _cli(
        "train",
        "--from",
        str(smoke_artifact),
        "--feedback",
        str(tmp_path),
        "--pooling",
        "cls",
        "--out",
        str(tmp_path / "x"),
    )
    assert done.returncode == 1
    assert "--pooling: a fine-tune keeps its parent's (--from)" in done.stderr


def test_corrections_are_repeated_to_about_the_replay_size_at_most_eight_times() -> None:
    from trainer.finetune import MAX_FEEDBACK_REPEATS, feedback_repeats

    assert feedback_repeats(400, 2000) == 5
    assert feedback_repeats(2000, 2000) == 1
    assert feedback_repeats(5000, 2000) == 1
    assert feedback_repeats(10, 2000) == MAX_FEEDBACK_REPEATS
    assert feedback_repeats(0, 2000) == 1
