"""The interface between the trainer and experiment trackers: the trainer opens the
trackers asked for, hands them the run's params, each epoch's row and the finished
artifact, and closes them, as failed when training raised."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from trainer.errors import TrainerError

# What each tracker imports, all from pyproject's `tracking` extra: MLflow's local store is
# SQLite through SQLAlchemy, its schema created by Alembic's migrations.
NEEDS = {"mlflow": ("mlflow", "sqlalchemy", "alembic"), "tensorboard": ("tensorboard",)}
REPORT_TO = tuple(NEEDS)


@dataclass(frozen=True)
class Where:
    """Where the trackers write (trainer.tracking.options fills it from flags and env)."""

    run_name: str
    tracking_uri: str  # MLflow's store
    experiment: str  # MLflow's experiment, by name
    log_dir: Path  # this run's TensorBoard directory


class Reporter(Protocol):
    """One tracker, called by the trainer in this order: params, epoch per epoch, finish,
    close (close alone when training failed)."""

    def params(self, values: dict[str, str]) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def finish(self, artifact: Path, metrics: dict[str, Any]) -> None: ...

    def close(self, *, failed: bool) -> None: ...


class Reporters:
    """Every tracker asked for, called in turn (none at all: --report-to none); a context
    manager that closes them, as failed when the block raised."""

    def __init__(self, reporters: Sequence[Reporter] = ()) -> None:
        self.reporters = list(reporters)

    def __enter__(self) -> Reporters:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for r in self.reporters:
            r.close(failed=exc_type is not None)

    def params(self, values: dict[str, str]) -> None:
        for r in self.reporters:
            r.params(values)

    def epoch(self, row: dict[str, Any]) -> None:
        for r in self.reporters:
            r.epoch(row)

    def finish(self, artifact: Path, metrics: dict[str, Any]) -> None:
        for r in self.reporters:
            r.finish(artifact, metrics)


def check_installed(names: Sequence[str]) -> None:
    """Refuse, before any training, a tracker whose packages are missing, naming the extra."""
    for name in names:
        for module in NEEDS[name]:
            if importlib.util.find_spec(module) is None:
                raise TrainerError(
                    f"--report-to {name} needs {module}, from the tracking extra: "
                    "pip install 'support-router[tracking]'"
                )


def open_reporters(names: Sequence[str], where: Where) -> Reporters:
    """Start a run in each tracker named (imported only here, so that a run without
    --report-to needs none of them)."""
    check_installed(names)
    started: list[Reporter] = []
    try:
        for name in names:
            if name == "mlflow":
                from trainer.tracking.mlflow_run import MlflowRun

                started.append(MlflowRun.start(where))
            elif name == "tensorboard":
                from trainer.tracking.tensorboard_log import TensorBoardRun

                started.append(TensorBoardRun.start(where))
    except BaseException:
        for r in started:
            r.close(failed=True)
        raise
    return Reporters(started)
