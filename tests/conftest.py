"""Shared test configuration: paths every tier may need."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KAFKA_TOOL = REPO / "deploy" / "local-kafka" / "kafka"
SHARED = REPO.parent / "shared"


CLINC_FILE = SHARED / "data" / "clinc150" / "data_oos_plus.json"


# Fixtures that train or load a model. A test using one, directly or through another
# fixture, is marked `model`; so `pytest tests/unit -m "not model"` trains and loads none.
# A test that trains or loads one on its own is marked in its file (pytestmark, a decorator).
MODEL_FIXTURES = frozenset({"smoke_artifact"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def smoke_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artifact from the trainer's smoke preset, trained once per session (~15 s)."""
    from trainer.cli import main

    out = tmp_path_factory.mktemp("artifact") / "smoke"
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    return out
