"""Shared test configuration: paths every tier may need."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KAFKA_TOOL = REPO / "deploy" / "local-kafka" / "kafka"
SHARED = REPO.parent / "shared"


CLINC_FILE = SHARED / "data" / "clinc150" / "data_oos_plus.json"


@pytest.fixture(scope="session")
def smoke_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artifact from the trainer's smoke preset, trained once per session (~15 s)."""
    from trainer.cli import main

    out = tmp_path_factory.mktemp("artifact") / "smoke"
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    return out
