"""One smoke training reported to MLflow and TensorBoard, shared by this folder's tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TrackedRun:
    """Where a tracked smoke training wrote: its artifact, mlruns/ and TensorBoard dir."""

    artifact: Path
    mlruns: Path
    tensorboard: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlruns / 'mlflow.db'}"


@pytest.fixture(scope="package")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackedRun]:
    """`support-trainer train --preset smoke --report-to mlflow,tensorboard`, run where
    neither tracker is configured: both write to their defaults under the working dir."""
    from trainer.cli import main

    cwd = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        argv = ["train", "--preset", "smoke", "--out", "smoke", "--report-to", "mlflow,tensorboard"]
        assert main(argv) == 0
    [tensorboard] = (cwd / "tensorboard").iterdir()
    yield TrackedRun(cwd / "smoke", cwd / "mlruns", tensorboard)
