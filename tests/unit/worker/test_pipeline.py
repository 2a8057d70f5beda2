"""The loop without Kafka (it runs on a broker in the integration tests): waits that keep
the group membership, overlap and commit order, aborts and rewinds, the circuit breaker,
rebalance callbacks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from tests.unit.worker.fakes import (
    BrokenModel,
    FlakyModel,
    GatedModel,
    GroupConsumer,
    LoggedModel,
    PausingConsumer,
    PoisonedBatchModel,
    TxnProducer,
    message,
)
from worker.errors import FatalKafkaError, ModelBrokenError
from worker.health import Health
from worker.inference import infer
from worker.intake import Item
from worker.metrics import Metrics
from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier
from worker.model.protocol import Model, Prediction
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.runtime.otel import OtelTracer, add_trace_ids
from worker.settings import WorkerSettings
from worker.tracing import parse_traceparent


def _pipeline(
    model: Model, consumer: Any = None, producer: Any = None, **settings: Any
) -> Pipeline:
    return Pipeline(
        WorkerSettings(**settings),
        model,
        RoutingPolicy(),
        cast(Any, consumer),
        cast(Any, producer),
        Metrics(),
        Health(stale_after_s=30),
    )


def test_a_slow_forward_pass_keeps_polling_with_partitions_paused() -> None:
    model = GatedModel()  # runs only once the consumer has been polled while paused
    consumer = PausingConsumer(model)
    pipeline = _pipeline(model, consumer, max_poll_interval_ms=1000)  # poll after 0.25 s
    items = pipeline_items(pipeline, [message(0, 0)])
    future = pipeline._model_thread.submit(infer, model, items, [1, 3, 2])
    result = pipeline.wait_keeping_membership(future)
    assert [type(r) for r in result.results] == [Prediction]
    assert consumer.calls[0] == "pause:2" and consumer.calls[-1] == "resume:2"
    assert pipeline.carry == ["a record fetched before the pause took effect"]  # kept, not dropped


def pipeline_items(pipeline: Pipeline, msgs: list[Any]) -> list[Item]:
    from worker.intake import intake
    from worker.kafka.clients import to_record

    return intake([to_record(m) for m in msgs], pipeline.classifier, 1000)


# -- overlap: batch N in the model while N-1 commits, strictly in order ---------------


def _overlap_pipeline(
    smoke_artifact: Path,
    overlap: bool,
    fail_commit: int | None = None,
    abortable: bool = True,
    model_type: type[LoggedModel] = LoggedModel,
) -> tuple[Pipeline, list[tuple[str, int]], TxnProducer, GroupConsumer]:
    events: list[tuple[str, int]] = []
    model = model_type(Classifier(load_artifact(smoke_artifact), "cpu", "float32"), events)
    producer, consumer = TxnProducer(events, fail_commit, abortable), GroupConsumer()
    batching = {"max_batch_size": 8, "overlap": overlap}
    pipeline = _pipeline(model, consumer, producer, batching=batching)
    # At each commit: is the next batch already in the model (submitted, not collected)?
    producer.in_flight = lambda: bool(pipeline.flights)
    return pipeline, events, producer, consumer


def Msg(offset: int, text: str) -> Any:  # noqa: N802 - reads as a record
    return message(0, offset, text)


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
    # With overlap, batches 1 and 2 commit after batches 2 and 3 went into the model
    # thread; the last has nothing after it. Without, nothing is in flight at a commit.
    assert producer.in_flight_at_commit == ([True, True, False] if overlap else [False] * 3)


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
    assert [e for e in events if e[0] == "infer"] == [("infer", 1), ("infer", 2)]
    assert pipeline.metrics.model_calls._value.get() == 2  # batch 2's pass counts, dropped or not
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


def test_the_circuit_opens_when_the_model_fails_every_batch(smoke_artifact: Path) -> None:
    """Issue 9, defect 9: a broken model must not turn all traffic into dead letters."""
    pipeline, _events, producer, consumer = _overlap_pipeline(
        smoke_artifact, False, model_type=BrokenModel
    )
    pipeline.health.model_ready = True
    for attempt in range(1, 4):
        pipeline.accept([Msg(i, f"refund order {i}") for i in range(8)])
        if attempt < 3:
            assert not pipeline.dispatch() or not pipeline.drain()
            assert pipeline.broken_batches == attempt and consumer.seeks[-1] == (0, 0)
            assert pipeline.metrics.model_failing_batches._value.get() == attempt
        else:
            with pytest.raises(ModelBrokenError, match="3 batches in a row"):
                pipeline.dispatch() and pipeline.drain()
    assert producer.produced == [] and producer.commits == 0  # not one dead letter
    assert not pipeline.health.model_ready


def test_a_batch_of_bad_messages_is_dead_lettered_when_the_probe_passes(
    smoke_artifact: Path,
) -> None:
    pipeline, _events, producer, _ = _overlap_pipeline(
        smoke_artifact, False, model_type=PoisonedBatchModel
    )
    pipeline.accept([Msg(i, f"poison {i}") for i in range(8)])
    assert pipeline.dispatch() and pipeline.drain()
    assert pipeline.broken_batches == 0 and producer.commits == 1
    # eight dead letters (stage infer), committed with their offsets; no result
    assert producer.topics == [WorkerSettings().topics.dlq] * 8


def test_a_rewind_never_guesses_when_the_committed_lookup_fails(smoke_artifact: Path) -> None:
    """Issue 9, defect 10: a per-partition lookup error used to mean 'from the beginning'."""
    from types import SimpleNamespace

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


# -- records the client cannot deliver, stalls ------------------------------------------


def _undecompressible(offset: int) -> Any:
    err = KafkaError(KafkaError._BAD_COMPRESSION, "Decompression (codec 0x4) failed")
    return Message(topic="memory", partition=0, offset=offset, error=err)


def test_an_unreadable_batch_is_a_pointer_committed_past_and_routing_resumes_behind_it(
    smoke_artifact: Path,
) -> None:
    pipeline, _, producer, consumer = _overlap_pipeline(smoke_artifact, False)
    # The error twice in one chunk: the second was fetched before the probe's seek.
    pipeline.accept(
        [Msg(0, "refund"), Msg(1, "refund"), _undecompressible(2), _undecompressible(2)]
    )
    assert consumer.seeks == [(0, 3)]  # the probe
    pipeline.accept([_undecompressible(2)])  # a later chunk: 3 is in the span too
    assert consumer.seeks == [(0, 3), (0, 5)]  # gallop to 2 + 3
    pipeline.accept([Msg(5, "where is my order"), Msg(6, "stale: fetched from the probe")])
    assert consumer.seeks[-1] == (0, 4)  # bisect between 3 (in the span) and 5 (past it)
    pipeline.accept([Msg(4, "my card was declined")])  # 4 is readable: the span is 2-3
    assert consumer.seeks[-1] == (0, 4)  # routing resumes at 4
    pipeline.accept([Msg(4, "my card was declined"), Msg(5, "where is my order")])
    assert pipeline.process(pipeline.batcher.take())
    dlq = WorkerSettings().topics.dlq
    assert producer.topics.count(dlq) == 1 and producer.produced[2] is None  # a pointer
    assert len(producer.produced) == 5 and producer.last_offsets == [(0, 6)]
    counted = pipeline.metrics.unreadable_offsets.labels("memory", "0", "_BAD_COMPRESSION")
    assert counted._value.get() == 2
    assert pipeline.metrics.consumer_errors.labels("_BAD_COMPRESSION")._value.get() == 3


def test_a_partition_whose_records_wait_uncommitted_shows_as_stalled(
    smoke_artifact: Path,
) -> None:
    now = [0.0]
    pipeline, _, _, consumer = _overlap_pipeline(smoke_artifact, False)
    pipeline.stall.clock = lambda: now[0]
    pipeline._on_assign(cast(Any, consumer), [TopicPartition("memory", 0)])
    consumer.seeks.append((0, 7))  # fetch position 7, high watermark 100
    stalled = pipeline.metrics.partition_stalled.labels("memory", "0")
    pipeline.check_stalls()
    assert stalled._value.get() == 0
    now[0] = pipeline.s.stall_after_s + 1
    pipeline.check_stalls()
    assert stalled._value.get() == 1
    consumer.high_watermark = 7  # caught up
    pipeline.check_stalls()
    assert stalled._value.get() == 0


# -- rebalance callbacks --------------------------------------------------------------


def test_assigned_partitions_start_at_their_committed_offsets_not_librdkafkas(
    smoke_artifact: Path,
) -> None:
    pipeline, _, _, consumer = _overlap_pipeline(smoke_artifact, False)
    pipeline._on_assign(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert consumer.assigned == [(0, 0)]  # absolute: librdkafka does not look it up again


def _rebalance_pipeline(smoke_artifact: Path) -> tuple[Pipeline, TxnProducer, GroupConsumer]:
    pipeline, _, producer, _ = _overlap_pipeline(smoke_artifact, False)
    consumer = GroupConsumer(owned=(0, 1))
    pipeline.consumer = cast(Any, consumer)
    pipeline.committer.consumer = cast(Any, consumer)
    return pipeline, producer, consumer


def test_a_revoke_during_a_slow_forward_pass_forgets_that_partition_only(
    smoke_artifact: Path,
) -> None:
    pipeline, producer, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.accept([message(p, o) for o in range(3) for p in (0, 1)])
    pipeline.carry = [message(0, 3), message(1, 3)]
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
    pipeline, producer, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.accept([message(p, o) for o in range(3) for p in (0, 1)])
    pipeline._on_revoke(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert producer.commits == 1 and len(producer.produced) == 6  # still owned at commit
    assert not len(pipeline.batcher)


def test_a_lost_partition_is_dropped_and_the_rest_is_read_again_from_its_first_held_offset(
    smoke_artifact: Path,
) -> None:
    pipeline, producer, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.accept([message(p, o) for o in (4, 5) for p in (0, 1)])
    pipeline.carry = [message(0, 6), message(1, 6)]
    consumer.owned = [1]
    pipeline._on_lost(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert consumer.seeks == [(1, 4)] and not len(pipeline.batcher) and not pipeline.flights
    assert pipeline.carry == []  # (1, 6) is read again after the seek, not processed twice
    assert producer.commits == 0


def test_a_lost_partition_keeps_a_carried_record_of_another_by_seeking_to_it(
    smoke_artifact: Path,
) -> None:
    pipeline, _, consumer = _rebalance_pipeline(smoke_artifact)
    pipeline.carry = [message(0, 6), message(1, 9)]
    consumer.owned = [1]
    pipeline._on_lost(cast(Any, consumer), [TopicPartition("memory", 0)])
    assert consumer.seeks == [(1, 9)] and pipeline.carry == []  # read again, not lost


def test_auto_runs_each_batch_on_the_tuner_s_variant_and_switches_on_its_verdict(
    smoke_artifact: Path,
) -> None:
    from worker.model.tuner import LiveVariants, Tuner, TunerLimits, Verdict

    events: list[tuple[str, int]] = []
    inner = Classifier(load_artifact(smoke_artifact), "cpu", "float32")
    a, b = LoggedModel(inner, events), LoggedModel(inner, events)
    # Dispatch times: b's cycles take half of a's.
    times = iter([0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5])
    verdicts: list[Verdict] = []
    tuner = Tuner(["a", "b"], TunerLimits(warmup_batches=1, block=2, rounds=1))
    live = LiveVariants({"a": a, "b": b}, tuner, verdicts.append, clock=lambda: next(times))
    producer, consumer = TxnProducer(events), GroupConsumer()
    pipeline = Pipeline(
        WorkerSettings(batching={"max_batch_size": 8, "max_wait_ms": 60_000}),
        a,
        RoutingPolicy(),
        cast(Any, consumer),
        cast(Any, producer),
        Metrics(),
        Health(stale_after_s=30),
        live=live,
    )
    pipeline.accept([Msg(i, f"refund order {i}") for i in range(56)])  # seven full batches
    assert pipeline.batcher.ready() and pipeline.dispatch() and pipeline.drain()
    assert (a.calls, b.calls) == (3, 4)
    assert verdicts == [Verdict({"a": 8.0, "b": 16.0}, "a", "b")]
    assert len(producer.produced) == 56


def test_a_batch_that_filled_at_once_counts_as_full_though_the_model_outlasts_its_deadline(
    smoke_artifact: Path,
) -> None:
    """The tuner times only full batches; a batch that waited for the model thread longer
    than max_wait_ms still closed by size, not by its deadline."""

    class SlowModel(LoggedModel):
        def predict(self, batch_ids: Any) -> Any:
            time.sleep(0.05)  # past max_wait_ms below
            return super().predict(batch_ids)

    class Recorder:
        def __init__(self, model: Model) -> None:
            self.model, self.full = model, []

        def model_for(self, messages: int, full: bool) -> Model:
            self.full.append(full)
            return self.model

        def interrupted(self) -> None:
            pass

    events: list[tuple[str, int]] = []
    model = SlowModel(Classifier(load_artifact(smoke_artifact), "cpu", "float32"), events)
    recorder = Recorder(model)
    pipeline = Pipeline(
        WorkerSettings(batching={"max_batch_size": 8, "max_wait_ms": 10}),
        model,
        RoutingPolicy(),
        cast(Any, GroupConsumer()),
        cast(Any, TxnProducer(events)),
        Metrics(),
        Health(stale_after_s=30),
        live=cast(Any, recorder),
    )
    pipeline.accept([Msg(i, f"refund order {i}") for i in range(36)])  # 4 full + 4 waiting
    time.sleep(0.02)  # the last batch's deadline passes: it closes short
    assert pipeline.batcher.ready() and pipeline.dispatch() and pipeline.drain()
    assert recorder.full == [True, True, True, True, False]


# -- tracing: one span per batch, each message's trace continued --------------------


@pytest.mark.parametrize("traced", [True, False])
def test_a_batch_is_one_trace_that_continues_each_message_s_own(traced: bool) -> None:
    """The loop's own path (accept, dispatch, the model thread, route, commit) with the
    SDK's in-memory exporter; off, every header goes out exactly as it came in."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sent = [f"00-{i + 1:032x}-{i + 101:016x}-01".encode() for i in range(3)] + [b"00-4-01"]
    msgs = [message(i % 2, i, headers=[(b"traceparent", t)]) for i, t in enumerate(sent)]
    producer, consumer = TxnProducer([]), GroupConsumer(owned=(0, 1))
    pipeline = Pipeline(
        WorkerSettings(batching={"max_batch_size": 4}),
        FlakyModel(),
        RoutingPolicy(),
        cast(Any, consumer),
        cast(Any, producer),
        Metrics(),
        Health(stale_after_s=30),
        tracer=OtelTracer(provider, "memory", "g") if traced else None,
    )
    with capture_logs(processors=[add_trace_ids]) as logs:
        pipeline.accept(msgs)
        assert pipeline.batcher.ready() and pipeline.dispatch() and pipeline.drain()
    pipeline._model_thread.shutdown(wait=True)
    out = [dict(h)["traceparent"] for h in producer.headers]
    [committed] = [e for e in logs if e["event"] == "batch_committed"]
    if not traced:
        assert out == sent and not exporter.get_finished_spans()
        assert "trace_id" not in committed
        return
    spans = exporter.get_finished_spans()
    [batch] = [s for s in spans if s.name == "support.batch"]
    steps = {s.name: s for s in spans if s.parent and s.parent.span_id == batch.context.span_id}
    assert sorted(steps) == ["support.commit", "support.consume", "support.infer"]
    linked = sorted((lk.context.trace_id, lk.context.span_id) for lk in batch.links)
    assert linked == [(i + 1, i + 101) for i in range(3)]  # the invalid one: no link
    assert committed["trace_id"] == f"{batch.context.trace_id:032x}"
    routes = {s.context.span_id: s for s in spans if s.name == "support.route"}
    for i in range(3):
        context = parse_traceparent(out[i])
        assert context is not None and context.trace_id == i + 1  # the message's own trace
        route = routes[context.span_id]  # a span of the router...
        assert route.parent is not None and route.parent.span_id == i + 101  # ...under its sender
    assert out[3] == b"00-4-01"  # nothing valid to continue: as it came in
