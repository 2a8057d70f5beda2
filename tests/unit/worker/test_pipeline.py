"""The pipeline's failure isolation and offsets, without Kafka (the loop is tested on a broker)."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import pytest

from worker import codec
from worker.admin import Health
from worker.inference import BatchOutput, Classifier
from worker.metrics import Metrics
from worker.pipeline import Item, Pipeline, next_offsets
from worker.routing import RoutingPolicy
from worker.settings import WorkerSettings

POISON = 666


class FlakyModel:
    """Fails any batch holding the poison token; counts calls."""

    heads: ClassVar[dict[str, tuple[str, ...]]] = {
        "action": ("auto_resolve", "request_more_info", "escalate_to_human")
    }

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, batch: list[list[int]]) -> BatchOutput:
        self.calls += 1
        if any(POISON in ids for ids in batch):
            raise RuntimeError("CUDA error: device-side assert (simulated)")
        probs = np.tile([0.9, 0.05, 0.05], (len(batch), 1))
        return BatchOutput(dict(self.heads), {"action": probs}, {"action": probs.argmax(1)}, 1.0)


def _item(i: int, ids: list[int]) -> Item:
    rec = codec.Record("in", 0, i, None, b"{}", [], None)
    return Item(rec, codec.Accepted(rec, {}, f"m{i}", None, "t"), ids)


@pytest.fixture
def pipeline() -> Pipeline:
    model = FlakyModel()
    return Pipeline(WorkerSettings(), cast(Classifier, model), RoutingPolicy(), cast(Any, None),
                    cast(Any, None), Metrics(), Health(stale_after_s=30))  # fmt: skip


def test_a_failing_message_is_isolated_and_only_it_fails(pipeline: Pipeline) -> None:
    items = [_item(i, [1, 2, POISON if i == 5 else 3]) for i in range(8)]
    rows, failures, _ = pipeline.infer(items)
    assert [id(i) for i in items if id(i) in failures] == [id(items[5])]
    assert len(rows) == 7
    assert isinstance(failures[id(items[5])], RuntimeError)
    model = cast(FlakyModel, pipeline.classifier)
    # 1 + 1 retry, then halves: [0..3] ok, [4..7] fails, [4,5] fails, [4] ok, [5] fails, [6,7] ok
    assert model.calls == 8


def test_a_healthy_batch_is_one_call(pipeline: Pipeline) -> None:
    rows, failures, _ = pipeline.infer([_item(i, [1, 2]) for i in range(16)])
    assert (len(rows), failures, cast(FlakyModel, pipeline.classifier).calls) == (16, {}, 1)


def test_next_offsets_are_last_plus_one_per_partition() -> None:
    recs = [
        codec.Record("t", p, o, None, None, [], None) for p, o in [(0, 5), (1, 9), (0, 7), (0, 6)]
    ]
    assert [(tp.partition, tp.offset) for tp in next_offsets(recs)] == [(0, 8), (1, 10)]


class RecordingConsumer:
    """Just enough of a Consumer to watch pause/poll/resume around a slow forward pass."""

    def __init__(self) -> None:
        from confluent_kafka import TopicPartition

        self.owned = [TopicPartition("in", 0), TopicPartition("in", 1)]
        self.calls: list[str] = []

    def assignment(self) -> list[Any]:
        return self.owned

    def pause(self, parts: list[Any]) -> None:
        self.calls.append(f"pause:{len(parts)}")

    def resume(self, parts: list[Any]) -> None:
        self.calls.append(f"resume:{len(parts)}")

    def poll(self, timeout: float) -> Any:
        self.calls.append("poll")
        return (
            "a record fetched before the pause took effect"
            if self.calls.count("poll") == 1
            else None
        )


class SlowModel(FlakyModel):
    def predict(self, batch: list[list[int]]) -> BatchOutput:
        import time

        time.sleep(1.6)
        return super().predict(batch)


def test_a_slow_forward_pass_keeps_polling_with_partitions_paused() -> None:
    consumer = RecordingConsumer()
    settings = WorkerSettings(max_poll_interval_ms=1000)  # wait 0.25 s, then poll while paused
    model = cast(Classifier, SlowModel())
    pipeline = Pipeline(settings, model, RoutingPolicy(), cast(Any, consumer), cast(Any, None),
                        Metrics(), Health(stale_after_s=30))  # fmt: skip
    rows, failures, _ = pipeline.infer([_item(0, [1, 2])])
    assert len(rows) == 1 and not failures
    assert consumer.calls[0] == "pause:2" and consumer.calls[-1] == "resume:2"
    assert consumer.calls.count("poll") >= 1
    assert pipeline.carry == ["a record fetched before the pause took effect"]  # kept, not dropped
