"""The import rules hold in the repository, and a broken one is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.check_imports import check, main


def test_the_repository_keeps_every_import_rule() -> None:
    assert check(REPO) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("module", "text", "rule"),
    [
        ("worker/kafka/clients.py", "from worker.pipeline import Pipeline\n", "Kafka adapters"),
        ("worker/kafka/commit.py", "from worker import model\n", "Kafka adapters"),
        ("worker/model/network.py", "from worker.settings import X\n", "model library"),
        ("worker/pipeline.py", "import worker.console.app\n", "only the command line"),
        ("trainer/build.py", "from worker.pipeline import Pipeline\n", "the trainer shares"),
        ("trainer/build.py", "from worker import service\n", "the trainer shares"),
        ("worker/router.py", "from worker import service\n", "the Python API"),
        ("worker/serving.py", "from worker.metrics import Metrics\n", "the Python API"),
        ("schemas/messages.py", "import worker.routing\n", "schemas are the contract"),
        ("worker/routing.py", "from trainer import cli\n", "never imports the trainer"),
        ("worker/pipeline.py", "from opentelemetry import trace\n", "OpenTelemetry"),
        ("worker/tracing.py", "import opentelemetry.sdk.trace\n", "OpenTelemetry"),
        ("trainer/training.py", "import mlflow\n", "experiment trackers"),
        ("trainer/build.py", "from torch.utils.tensorboard import W\n", "experiment trackers"),
    ],
)
def test_a_broken_rule_is_named(tmp_path: Path, module: str, text: str, rule: str) -> None:
    root = _tree(tmp_path, {module: "from typing import Any\n" + text})
    [problem] = check(root)
    assert problem.startswith(f"{module}:2: ") and rule in problem


def test_allowed_imports_pass(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "trainer/build.py": "from worker.model.artifact import load\nimport worker.routing\n",
            "worker/cli.py": "from worker.ops.topics import plan\nfrom worker.console import app\n",
            "worker/model/classifier.py": "from worker.model.text import x\nimport schemas\n",
            "worker/runtime/otel.py": "from opentelemetry import trace\nimport worker.tracing\n",
            "trainer/tracking/mlflow_run.py": "from mlflow import MlflowClient\n",
        },
    )
    assert check(root) == []


def test_main_exits_1_on_a_broken_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path, {"worker/kafka/x.py": "import worker.ops.replay\n"})
    assert main([str(root)]) == 1
    assert "worker/kafka/x.py:1" in capsys.readouterr().out
