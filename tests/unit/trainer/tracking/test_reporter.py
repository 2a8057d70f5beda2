"""The trackers' interface and flags: fan-out, failure, the missing extra, destinations."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from trainer.cli import build_parser, main
from trainer.tracking import options
from trainer.tracking.reporter import Reporters


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def params(self, values: dict[str, str]) -> None:
        self.calls.append(("params", values))

    def epoch(self, row: dict[str, Any]) -> None:
        self.calls.append(("epoch", row["epoch"]))

    def finish(self, artifact: Path, metrics: dict[str, Any]) -> None:
        self.calls.append(("finish", artifact))

    def close(self, *, failed: bool) -> None:
        self.calls.append(("close", failed))


def test_every_tracker_hears_every_call_and_a_failure_closes_them_failed() -> None:
    a, b = Recorder(), Recorder()
    with Reporters([a, b]) as reporters:
        reporters.params({"seed": "42"})
        reporters.epoch({"epoch": 1})
        reporters.finish(Path("out"), {})
    assert (
        a.calls
        == b.calls
        == [
            ("params", {"seed": "42"}),
            ("epoch", 1),
            ("finish", Path("out")),
            ("close", False),
        ]
    )
    c = Recorder()
    with pytest.raises(RuntimeError), Reporters([c]) as reporters:
        reporters.epoch({"epoch": 1})
        raise RuntimeError("training failed")
    assert c.calls == [("epoch", 1), ("close", True)]


@pytest.mark.parametrize(
    ("tracker", "module"), [("mlflow", "mlflow"), ("tensorboard", "tensorboard")]
)
def test_a_missing_tracker_names_the_extra_before_training(
    tracker: str,
    module: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.chdir(tmp_path)  # should the check fail, its trackers write here
    out = tmp_path / "out"
    assert main(["train", "--preset", "smoke", "--out", str(out), "--report-to", tracker]) == 1
    err = capsys.readouterr().err
    assert f"--report-to {tracker} needs {module}, from the tracking extra" in err
    assert "pip install 'support-router[tracking]'" in err
    assert not out.exists()


def test_the_tracking_uri_is_the_flag_else_the_environment_else_sqlite_in_mlruns() -> None:
    env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    cwd = Path("/work/here")
    assert options.tracking_uri("sqlite:///x.db", env, cwd) == "sqlite:///x.db"
    assert options.tracking_uri(None, env, cwd) == "http://mlflow:5000"
    assert options.tracking_uri(None, {}, cwd) == "sqlite:////work/here/mlruns/mlflow.db"


def _train_args(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", "--out", "runs/cand", *flags])


def test_destinations_follow_the_flags_and_the_environment() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    where = options.where(_train_args("--report-to", "mlflow,tensorboard"), {}, now)
    assert where.run_name == "cand" and where.experiment == "support-router"
    assert where.log_dir == Path("tensorboard/cand-20260102-030405")
    args = _train_args("--name", "m", "--tensorboard-dir", "tb", "--report-to", "none")
    assert args.report_to == ()
    where = options.where(args, {"MLFLOW_EXPERIMENT_NAME": "exp"}, now)
    assert where.run_name == "m" and where.experiment == "exp"
    assert where.log_dir == Path("tb/m-20260102-030405")
    args = _train_args("--run-name", "r", "--experiment", "e")
    assert options.where(args, {"MLFLOW_EXPERIMENT_NAME": "exp"}, now).experiment == "e"


def test_an_unknown_tracker_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _train_args("--report-to", "mlflow,wandb")
    assert exc.value.code == 2
    assert "unknown tracker wandb; expected mlflow, tensorboard or none" in capsys.readouterr().err
