"""`support-trainer train`'s tracking flags, and where they (or the environment) send
each tracker."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from trainer.tracking.reporter import REPORT_TO, Reporters, Where, open_reporters

DEFAULT_EXPERIMENT = "support-router"
# MLflow's own default is ./mlruns; MLflow 3 refuses its file store there unless told to,
# so the runs go to SQLite inside it, and the artifacts beside the database.
MLRUNS = "mlruns"
MLFLOW_DB = "mlflow.db"
TENSORBOARD_DIR = Path("tensorboard")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report-to",
        type=_trackers,
        default=(),
        metavar="T[,T]",
        help="log params, each epoch, the evaluation and the artifact to: mlflow, "
        "tensorboard; comma-separated (default none; the tracking extra)",
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow's store (default $MLFLOW_TRACKING_URI, else "
        f"sqlite:///<cwd>/{MLRUNS}/{MLFLOW_DB})",
    )
    p.add_argument(
        "--experiment",
        help=f"MLflow's experiment (default $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT})",
    )
    p.add_argument(
        "--run-name", help="the run's name in the trackers (default --name, else --out's name)"
    )
    p.add_argument(
        "--tensorboard-dir",
        type=Path,
        default=TENSORBOARD_DIR,
        help=f"TensorBoard's log dir (default {TENSORBOARD_DIR}/); each run in a subdir "
        "named for it and its start",
    )


def _trackers(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "none")
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown tracker {', '.join(unknown)}; expected {', '.join(REPORT_TO)} or none"
        )
    return tuple(dict.fromkeys(names))


def tracking_uri(flag: str | None, environ: Mapping[str, str], cwd: Path) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else SQLite in ./mlruns (absolute, so
    that the run's artifacts do not follow the working directory)."""
    return (
        flag
        or environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{(cwd / MLRUNS / MLFLOW_DB).resolve()}"
    )


def where(
    args: argparse.Namespace,
    environ: Mapping[str, str] = os.environ,
    now: datetime | None = None,
) -> Where:
    """The trackers' destinations for a train command's arguments."""
    run_name = args.run_name or args.name or args.out.name
    started = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return Where(
        run_name=run_name,
        tracking_uri=tracking_uri(args.tracking_uri, environ, Path.cwd()),
        experiment=args.experiment or environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT,
        log_dir=args.tensorboard_dir / f"{run_name}-{started}",
    )


def reporters(args: argparse.Namespace) -> Reporters:
    """The trackers --report-to names, started (none: a Reporters that does nothing)."""
    return open_reporters(args.report_to, where(args)) if args.report_to else Reporters()
