"""Shared test configuration: paths every tier may need."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data import SETS, banking77, clinc

REPO = Path(__file__).resolve().parent.parent
KAFKA_TOOL = REPO / "deploy" / "local-kafka" / "kafka"
# The CRD schemas of the custom kinds in deploy/k8s, vendored (deploy/vendor/README.md).
VENDOR = REPO / "deploy" / "vendor"
LABELS_MD = REPO / "docs" / "labels.md"


# Where every tool and the trainer look too: $CLINC_PATH / $BANKING77_PATH, else the data
# sets vendored in trainer/data/sets. A clone has them, so no test skips for want of them.
CLINC_FILE = clinc.default_path() or SETS / "clinc150" / "data_oos_plus.json"
B77_FILE = banking77.default_path() or SETS / "banking77" / "train.csv"


# Fixtures that train or load a model. A test using one, directly or through another
# fixture, is marked `model`; so `pytest tests/unit -m "not model"` trains and loads none.
# A test that trains or loads one on its own is marked in its file (pytestmark, a decorator).
MODEL_FIXTURES = frozenset({"smoke_artifact", "variants_artifact"})


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


@pytest.fixture(scope="session")
def variants_artifact(smoke_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke artifact with its ONNX variants exported and scored (support-trainer
    variants), in a copy of its own."""
    import shutil

    from trainer.cli import main

    out = tmp_path_factory.mktemp("variants") / "smoke"
    shutil.copytree(smoke_artifact, out)
    assert main(["variants", "--model", str(out), "--preset", "smoke"]) == 0
    return out
