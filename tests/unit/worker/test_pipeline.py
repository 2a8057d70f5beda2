"""The pipeline's failure isolation and offsets, without Kafka (the loop is tested on a broker)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import orjson
import pytest

from worker import codec
from worker.admin import Health
from worker.bench import MemoryMessage
from worker.commit import next_offsets
from worker.inference import BatchOutput, Classifier
from worker.metrics import Metrics
from worker.pipeline import Item, Pipeline
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
    return Pipeline(
        WorkerSettings(),
        cast(Classifier, model),
        RoutingPolicy(),
        cast(Any, None),
        cast(Any, None),
        Metrics(),
        Health(stale_after_s=30),
    )


def test_a_failing_message_is_isolated_and_only_it_fails(pipeline: Pipeline) -> None:
    items = [_item(i, [1, 2, POISON if i == 5 else 3]) for i in range(8)]
    rows, failures, _, broken = pipeline.infer(items)
    assert not broken
    assert [id(i) for i in items if id(i) in failures] == [id(items[5])]
    assert len(rows) == 7
    assert isinstance(failures[id(items[5])], RuntimeError)
    model = cast(FlakyModel, pipeline.classifier)
    # 1 + 1 retry, then halves: [0..3] ok, [4..7] fails, [4,5] fails, [4] ok, [5] fails, [6,7] ok
    assert model.calls == 8


def test_a_healthy_batch_is_one_call(pipeline: Pipeline) -> None:
    rows, failures, _, _ = pipeline.infer([_item(i, [1, 2]) for i in range(16)])
    assert (len(rows), failures, cast(FlakyModel, pipeline.classifier).calls) == (16, {}, 1)


def test_an_unfamiliar_result_is_produced_to_the_fallback_topic() -> None:
    from worker.inference import Row
    from worker.pipeline import to_outgoing

    settings = WorkerSettings()
    policy = RoutingPolicy(0.7, max_unfamiliarity=2.0)
    labels = {
        "intent": "general_question",
        "urgency": "low",
        "sentiment": "calm",
        "action": "auto_resolve",
    }
    confidences = dict.fromkeys(labels, 0.99)
    ctx = codec.ResultContext(
        {"name": "m", "version": "1", "content_hash": "0" * 64},
        policy.name,
        "2026-01-01T00:00:00Z",
        1.0,
        1,
        0.0,
    )
    model = cast(Classifier, type("M", (), {"model_info": {"version": "1"}})())
    outs = {}
    for name, score in (("familiar", 1.5), ("unfamiliar", 7.0)):
        row = Row(labels, confidences, {}, score)
        outs[name] = to_outgoing(_item(0, [1]), row, None, ctx, policy, settings, model)
    assert outs["familiar"].topic == settings.topics.auto_resolve
    unfamiliar = outs["unfamiliar"]
    assert (unfamiliar.topic, unfamiliar.route) == (
        settings.topics.more_info,
        "more_info:unfamiliar",
    )
    value = orjson.loads(unfamiliar.value or b"")
    assert value["routing"]["reason"] == "unfamiliar" and value["routing"]["unfamiliarity"] == 7.0
    assert value["action"] == "request_more_info"


def test_a_message_too_deep_to_serialize_is_a_dead_letter_not_a_crash() -> None:
    """Issue 9, defect 1: orjson reads 1,024 levels but writes about 254."""
    from worker.inference import Row
    from worker.pipeline import to_outgoing

    value = b'{"message_id": "d", "text": "hi", "a": ' + b"[" * 300 + b"]" * 300 + b"}"
    rec = codec.Record("in", 0, 7, b"k", value, [("trace", b"1")], None)
    accepted = codec.decode(rec, 1000)
    assert isinstance(accepted, codec.Accepted)  # it passes decode: the hazard is later
    settings, policy = WorkerSettings(), RoutingPolicy(0.7)
    labels = {
        "intent": "general_question",
        "urgency": "low",
        "sentiment": "calm",
        "action": "auto_resolve",
    }
    row = Row(labels, dict.fromkeys(labels, 0.99), {}, None)
    ctx = codec.ResultContext(
        {"name": "m", "version": "1", "content_hash": "0" * 64},
        policy.name,
        "2026-01-01T00:00:00Z",
        1.0,
        1,
        0.0,
    )
    model = cast(Classifier, type("M", (), {"model_info": {"version": "1"}})())
    out = to_outgoing(Item(rec, accepted, [1]), row, None, ctx, policy, settings, model)
    assert (out.topic, out.route, out.key, out.value) == (
        settings.topics.dlq,
        "dlq:serialize",
        b"k",
        value,
    )
    headers = dict(out.headers)
    assert headers["x-error-stage"] == b"serialize" and headers["trace"] == b"1"
    assert b"ecursion" in headers["x-error-message"]


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
    pipeline = Pipeline(
        settings,
        model,
        RoutingPolicy(),
        cast(Any, consumer),
        cast(Any, None),
        Metrics(),
        Health(stale_after_s=30),
    )
    with ThreadPoolExecutor(1) as model_thread:
        future = model_thread.submit(pipeline.infer, [_item(0, [1, 2])])
        rows, failures, _, _ = pipeline.wait_keeping_membership(future)
    assert len(rows) == 1 and not failures
    assert consumer.calls[0] == "pause:2" and consumer.calls[-1] == "resume:2"
    assert consumer.calls.count("poll") >= 1
    assert pipeline.carry == ["a record fetched before the pause took effect"]  # kept, not dropped


# -- overlap: batch N in the model while N-1 commits, strictly in order ---------------


def Msg(offset: int, text: str) -> MemoryMessage:  # noqa: N802 - reads as a record
    return MemoryMessage(offset, orjson.dumps({"message_id": f"m{offset}", "text": text}))


class TimedModel:
    """A real classifier whose forward passes are slow and logged."""

    def __init__(self, inner: Classifier, events: list[tuple[str, int]]) -> None:
        self.inner, self.events = inner, events
        self.heads, self.model_info = inner.heads, inner.model_info
        self.calls, self.busy = 0, False

    def token_ids(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        return self.inner.token_ids(texts)

    def predict(self, batch: list[list[int]]) -> BatchOutput:
        import time

        self.calls += 1
        self.events.append(("infer_start", self.calls))
        self.busy = True
        time.sleep(0.15)
        out = self.inner.predict(batch)
        self.busy = False
        self.events.append(("infer_end", self.calls))
        return out


class TxnProducer:
    """The transactional producer calls the commit protocol makes, logged; can fail commits."""

    def __init__(
        self, events: list[tuple[str, int]], fail_commit: int | None = None, abortable: bool = True
    ) -> None:
        self.events, self.fail_commit, self.abortable = events, fail_commit, abortable
        self.produced: list[bytes | None] = []
        self.topics: list[str] = []
        self.commits = 0
        self.model: TimedModel | None = None
        self.model_busy_at_commit: list[bool] = []

    def begin_transaction(self) -> None:
        pass

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any
    ) -> None:
        self.produced.append(value)
        self.topics.append(topic)

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[Any], *_: Any) -> None:
        self.last_offsets = [(tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, _timeout: float) -> None:
        import time

        from confluent_kafka import KafkaError, KafkaException

        self.commits += 1
        time.sleep(0.05)  # a broker round trip; the model thread has started by its end
        self.model_busy_at_commit.append(bool(self.model and self.model.busy))
        if self.commits == self.fail_commit:
            if self.abortable:
                raise KafkaException(
                    KafkaError(KafkaError._TIMED_OUT, "simulated", txn_requires_abort=True)
                )
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "simulated", retriable=True))
        self.events.append(("commit", self.last_offsets[0][1]))

    def abort_transaction(self, _timeout: float) -> None:
        self.events.append(("abort", self.commits))


class GroupConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition("memory", 0)]  # MemoryMessage's partition

    def committed(self, parts: list[Any], timeout: float) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition("memory", 0, 0)]

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))


def _overlap_pipeline(
    smoke_artifact: Path, overlap: bool, fail_commit: int | None = None, abortable: bool = True
) -> tuple[Pipeline, list[tuple[str, int]], TxnProducer, GroupConsumer]:
    from trainer import load_artifact

    events: list[tuple[str, int]] = []
    model = TimedModel(Classifier(load_artifact(smoke_artifact), "cpu", "float32"), events)
    settings = WorkerSettings(batching={"max_batch_size": 8, "overlap": overlap})
    producer, consumer = TxnProducer(events, fail_commit, abortable), GroupConsumer()
    producer.model = model
    pipeline = Pipeline(
        settings,
        cast(Classifier, model),
        RoutingPolicy(),
        cast(Any, consumer),
        cast(Any, producer),
        Metrics(),
        Health(stale_after_s=30),
    )
    return pipeline, events, producer, consumer


@pytest.mark.parametrize("overlap", [True, False])
def test_batches_commit_in_order_and_overlap_the_next_forward_pass(
    smoke_artifact: Path, overlap: bool
) -> None:
    pipeline, events, producer, _ = _overlap_pipeline(smoke_artifact, overlap)
    pipeline.accept([Msg(i, f"refund order {i}") for i in range(24)])  # three full batches
    assert pipeline.batcher.ready() and pipeline.dispatch()  # run() does this for the last
    assert pipeline.drain()
    # Offsets only move forward: batch k commits next offset 8k + 8, in order.
    assert [n for e, n in events if e == "commit"] == [8, 16, 24]
    assert len(producer.produced) == 24
    # With overlap, batches 1 and 2 commit while batches 2 and 3 are in the model; the
    # last has nothing after it. Without, the model is idle during every commit.
    assert producer.model_busy_at_commit == ([True, True, False] if overlap else [False] * 3)


def test_an_aborted_commit_drops_the_batch_in_flight_and_rewinds(smoke_artifact: Path) -> None:
    pipeline, events, _, consumer = _overlap_pipeline(smoke_artifact, True, fail_commit=1)
    pipeline.accept([Msg(i, f"refund order {i}") for i in range(24)])
    # Batch 1's commit failed while batch 2 was in the model: both are dropped, the
    # partition goes back to its committed offset, and the rest of the chunk is not taken.
    assert ("abort", 1) in events and not [e for e in events if e[0] == "commit"]
    assert consumer.seeks == [(0, 0)]
    assert not pipeline.flights and not len(pipeline.batcher)
    assert pipeline.drain()
    pipeline._model_thread.shutdown(wait=True)
    # Batch 2 ran (it was in the model) but nothing of it was committed; batch 3 never ran.
    assert [e for e in events if e[0] == "infer_start"] == [("infer_start", 1), ("infer_start", 2)]
    assert [e for e in events if e[0] == "commit"] == []


def test_a_commit_that_times_out_is_called_again_not_aborted(smoke_artifact: Path) -> None:
    """Issue 9, defect 7: abort after a retriable commit timeout answers _CONFLICT."""
    pipeline, events, producer, consumer = _overlap_pipeline(
        smoke_artifact, False, fail_commit=1, abortable=False
    )
    pipeline.accept([Msg(i, f"refund order {i}") for i in range(8)])
    assert pipeline.batcher.ready() and pipeline.dispatch() and pipeline.drain()
    assert [e for e in events if e[0] in ("commit", "abort")] == [("commit", 8)]
    assert producer.commits == 2 and consumer.seeks == []


class BrokenModel(TimedModel):
    """Every forward pass fails (think CUDA OOM); tokenizing still works."""

    def predict(self, batch: list[list[int]]) -> BatchOutput:
        raise RuntimeError("CUDA out of memory (simulated)")


class PoisonedBatchModel(TimedModel):
    """Fails every batch holding a message with the word 'poison'; the probe passes."""

    def __init__(self, inner: Classifier, events: list[tuple[str, int]]) -> None:
        super().__init__(inner, events)
        self.poison = set(inner.token_ids(["poison"])[0][0][1:-1])

    def predict(self, batch: list[list[int]]) -> BatchOutput:
        if any(self.poison & set(ids) for ids in batch):
            raise RuntimeError("bad input (simulated)")
        return self.inner.predict(batch)


def test_the_circuit_opens_when_the_model_fails_every_batch(smoke_artifact: Path) -> None:
    """Issue 9, defect 9: a broken model must not turn all traffic into dead letters."""
    from worker.errors import ModelBrokenError

    pipeline, events, producer, consumer = _overlap_pipeline(smoke_artifact, False)
    inner = cast(Any, pipeline.classifier).inner
    pipeline.classifier = cast(Classifier, BrokenModel(inner, events))
    pipeline.health.model_ready = True
    for attempt in range(1, 4):
        pipeline.accept([Msg(i, f"refund order {i}") for i in range(8)])
        if attempt < 3:
            assert not pipeline.dispatch() or not pipeline.drain()
            assert pipeline.broken_batches == attempt and consumer.seeks[-1] == (0, 0)
        else:
            with pytest.raises(ModelBrokenError, match="3 batches in a row"):
                pipeline.dispatch() and pipeline.drain()
    assert producer.produced == [] and producer.commits == 0  # not one dead letter
    assert not pipeline.health.model_ready


def test_a_batch_of_bad_messages_is_dead_lettered_when_the_probe_passes(
    smoke_artifact: Path,
) -> None:
    pipeline, events, producer, _ = _overlap_pipeline(smoke_artifact, False)
    inner = cast(Any, pipeline.classifier).inner
    pipeline.classifier = cast(Classifier, PoisonedBatchModel(inner, events))
    pipeline.accept([Msg(i, f"poison {i}") for i in range(8)])
    assert pipeline.dispatch() and pipeline.drain()
    assert pipeline.broken_batches == 0 and producer.commits == 1
    # eight dead letters (stage infer), committed with their offsets; no result
    assert producer.topics == [WorkerSettings().topics.dlq] * 8


def test_a_rewind_never_guesses_when_the_committed_lookup_fails(smoke_artifact: Path) -> None:
    """Issue 9, defect 10: a per-partition lookup error used to mean 'from the beginning'."""
    from types import SimpleNamespace

    from worker.errors import FatalKafkaError

    pipeline, _, _, consumer = _overlap_pipeline(smoke_artifact, False)

    def failing(parts: list[Any], timeout: float) -> list[Any]:
        # what librdkafka returns for a partition whose lookup failed
        return [
            SimpleNamespace(
                topic="memory", partition=0, offset=-1001, error="COORDINATOR_NOT_AVAILABLE"
            )
        ]

    consumer.committed = failing  # type: ignore[method-assign]
    with pytest.raises(FatalKafkaError, match="committed offsets"):
        pipeline.rewind()
    assert consumer.seeks == []


def test_a_rewind_drops_the_records_carried_from_a_paused_poll(smoke_artifact: Path) -> None:
    pipeline, _, _, consumer = _overlap_pipeline(smoke_artifact, False)
    pipeline.carry = [Msg(3, "fetched while paused")]
    pipeline.rewind()
    assert pipeline.carry == [] and consumer.seeks == [(0, 0)]  # the seek reads it again


def test_the_dead_letter_log_line_never_quotes_the_message() -> None:
    """Issue 9, defect 10: a validation reason can name customer-chosen metadata keys."""
    from structlog.testing import capture_logs

    from worker.outgoing import dead_letter

    settings = WorkerSettings()
    value = orjson.dumps(
        {"message_id": "x", "text": "hi", "metadata": {"jane.doe@example.com": {}}}
    )
    rec = codec.Record("in", 0, 1, None, value, [], None)
    rejected = codec.decode(rec, 1000)
    assert isinstance(rejected, codec.Rejected) and "jane.doe" in rejected.reason
    pipeline = Pipeline(
        settings,
        cast(Classifier, FlakyModel()),
        RoutingPolicy(),
        cast(Any, None),
        cast(Any, None),
        Metrics(),
        Health(stale_after_s=30),
    )
    item = Item(rec, rejected, [])
    with capture_logs() as logs:
        pipeline.observe([item], [dead_letter(rejected, settings.topics.dlq)], {}, 0.0, 0.0)
    (line,) = [e for e in logs if e["event"] == "dead_letter"]
    assert "jane.doe" not in repr(line) and line["error_type"] == "ValidationError"


# -- rebalance callbacks --------------------------------------------------------------


def _msg(partition: int, offset: int) -> Any:
    import time

    from confluent_kafka import Message

    value = orjson.dumps({"message_id": f"p{partition}-{offset}", "text": "refund please"})
    return Message(
        topic="memory",
        partition=partition,
        offset=offset,
        key=b"k",
        value=value,
        timestamp=(1, int(time.time() * 1000)),
    )


class TwoPartitionConsumer(GroupConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.owned = [0, 1]

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition("memory", p) for p in self.owned]


def _rebalance_pipeline(smoke_artifact: Path) -> tuple[Pipeline, TxnProducer, TwoPartitionConsumer]:
    pipeline, _, producer, _ = _overlap_pipeline(smoke_artifact, False)
    consumer = TwoPartitionConsumer()
    pipeline.consumer = cast(Any, consumer)
    pipeline.committer.consumer = cast(Any, consumer)
    return pipeline, producer, consumer


def test_a_revoke_during_a_slow_forward_pass_forgets_that_partition_only(
    smoke_artifact: Path,
) -> None:
    from confluent_kafka import TopicPartition

    pipeline, producer, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.accept([_msg(p, o) for o in range(3) for p in (0, 1)])
    pipeline.carry = [_msg(0, 3), _msg(1, 3)]
    pipeline.metrics.consumer_lag.labels("memory", "0").set(5)
    pipeline._waiting = True  # inside wait_keeping_membership: no commit may overtake
    consumer.owned = [1]
    pipeline._on_revoke(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert {i.record.partition for i in pipeline.batcher.items} == {1}
    assert [m.partition() for m in pipeline.carry] == [1]
    assert producer.commits == 0
    assert b'partition="0"' not in __import__("prometheus_client").generate_latest(
        pipeline.metrics.registry
    )


def test_a_revoke_outside_a_wait_commits_what_is_held_before_the_partition_goes(
    smoke_artifact: Path,
) -> None:
    from confluent_kafka import TopicPartition

    pipeline, producer, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.accept([_msg(p, o) for o in range(3) for p in (0, 1)])
    pipeline._on_revoke(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert producer.commits == 1 and len(producer.produced) == 6  # still owned at commit
    assert not len(pipeline.batcher)


def test_a_lost_partition_is_dropped_and_the_rest_is_read_again_from_its_first_held_offset(
    smoke_artifact: Path,
) -> None:
    from confluent_kafka import TopicPartition

    pipeline, producer, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.accept([_msg(p, o) for o in (4, 5) for p in (0, 1)])
    pipeline.carry = [_msg(0, 6), _msg(1, 6)]
    consumer.owned = [1]
    pipeline._on_lost(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert consumer.seeks == [(1, 4)] and not len(pipeline.batcher) and not pipeline.flights
    assert pipeline.carry == []  # (1, 6) is read again after the seek, not processed twice
    assert producer.commits == 0


def test_a_lost_partition_keeps_a_carried_record_of_another_by_seeking_to_it(
    smoke_artifact: Path,
) -> None:
    from confluent_kafka import TopicPartition

    pipeline, _, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.carry = [_msg(0, 6), _msg(1, 9)]
    consumer.owned = [1]
    pipeline._on_lost(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert consumer.seeks == [(1, 9)] and pipeline.carry == []  # read again, not lost


class RowDroppingModel(FlakyModel):
    """Answers every batch with one row too few: a model bug, not a bad message."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__()
        self.inner = inner

    def token_ids(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        return self.inner.token_ids(texts)

    def predict(self, batch: list[list[int]]) -> BatchOutput:
        return super().predict(batch[:-1])


def test_a_model_that_loses_rows_is_a_broken_model_not_a_crash(smoke_artifact: Path) -> None:
    pipeline, _, _, _ = _overlap_pipeline(smoke_artifact, False)
    pipeline.classifier = cast(Classifier, RowDroppingModel(cast(Any, pipeline.classifier).inner))
    rows, failures, _, broken = pipeline.infer([_item(i, [1, 2]) for i in range(4)])
    assert rows == {} and len(failures) == 4 and broken  # the probe lost its row too
