"""Shared test configuration: paths every tier may need."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KAFKA_TOOL = REPO / "deploy" / "local-kafka" / "kafka"
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
