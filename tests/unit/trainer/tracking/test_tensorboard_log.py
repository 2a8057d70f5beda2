"""`--report-to tensorboard`: the smoke model's scalars per epoch, read back from the
event files with TensorBoard's own reader."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.unit.trainer.tracking.conftest import TrackedRun

pytestmark = pytest.mark.model


def test_every_epoch_and_the_evaluation_are_in_the_event_files(tracked_run: TrackedRun) -> None:
    assert tracked_run.tensorboard.name.startswith("smoke-")
    events = EventAccumulator(str(tracked_run.tensorboard)).Reload()
    metrics = json.loads((tracked_run.artifact / "metrics.json").read_text())
    history = metrics["history"]
    for name, key in (
        ("train/loss", "train_loss"),
        ("val/sentiment_accuracy", "sentiment_accuracy"),
        ("val/mean_macro_f1", "mean_macro_f1"),
    ):
        scalars = events.Scalars(name)
        assert [s.step for s in scalars] == [row["epoch"] for row in history]
        assert [s.value for s in scalars] == pytest.approx([row[key] for row in history])
    clean = next(r for r in metrics["results"] if r.get("split") == "test_clean")
    [final] = events.Scalars("test_clean/synthetic/intent_macro_f1")
    assert final.step == history[-1]["epoch"]
    assert final.value == pytest.approx(clean["heads"]["intent"]["macro_f1"])
    assert {"params/text_summary", "evaluation/text_summary"} <= set(events.Tags()["tensors"])
