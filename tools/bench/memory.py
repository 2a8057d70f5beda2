"""Decode and the worker's pipeline on in-memory records: the worker's code, no broker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any

import orjson
from confluent_kafka import Message

from tools.bench.model import rate
from worker import codec
from worker.health import Health
from worker.metrics import Metrics
from worker.model.protocol import Model
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.settings import BatchingSettings, WorkerSettings


def inbound_records(texts: Sequence[str]) -> list[codec.Record]:
    """An inbound record per text, with every optional field a client may send."""
    return [
        codec.Record(
            "in",
            0,
            i,
            b"k",
            orjson.dumps(
                {
                    "message_id": f"m{i}",
                    "text": t,
                    "conversation_id": f"c{i % 101}",
                    "channel": "chat",
                    "created_at": "2026-11-24T10:00:00Z",
                    "metadata": {"plan": "pro", "tries": 2},
                }
            ),
            [],
            None,
        )
        for i, t in enumerate(texts)
    ]


def bench_decode(texts: Sequence[str], repeats: int = 3) -> float:
    """Microseconds per message for decode: orjson + pydantic validation of the inbound.

    The best of ``repeats`` passes: the least disturbed by anything else on the machine.
    """
    records = inbound_records(texts)
    best = float("inf")
    for _ in range(repeats):
        started = perf_counter()
        for r in records:
            codec.decode(r, 100_000)
        best = min(best, perf_counter() - started)
    return best / len(records) * 1e6


class MemoryMessage(Message):
    """A consumed record without a broker: a real Message, read by to_record as on a broker."""

    def __init__(self, offset: int, value: bytes) -> None:
        super().__init__(
            topic="memory",
            partition=0,
            offset=offset,
            key=b"k",
            value=value,
            timestamp=(1, int(time.time() * 1000)),
        )


class _MemoryProducer:
    def __init__(self) -> None:
        self.count = 0

    def produce(self, *_: Any, **__: Any) -> None:
        self.count += 1

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0


class _MemoryConsumer:
    def commit(self, **_: Any) -> None:
        pass

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition("memory", 0)]  # every MemoryMessage's partition: all owned


def bench_memory(
    classifier: Model,
    texts: Sequence[str],
    batching: BatchingSettings,
    model_thread: ThreadPoolExecutor | None = None,
) -> float:
    """The worker's pipeline on in-memory records: no broker, same code from decode to bytes.

    ``model_thread``: the thread that built and warmed ``classifier`` (worker.model_thread).
    """
    settings = WorkerSettings(mode="at_least_once", batching=batching)
    producer = _MemoryProducer()
    pipeline = Pipeline(
        settings,
        classifier,
        RoutingPolicy(),
        _MemoryConsumer(),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        Metrics(),
        Health(stale_after_s=60),
        model_thread=model_thread,
    )
    msgs = [
        MemoryMessage(i, orjson.dumps({"message_id": f"m{i}", "text": t}))
        for i, t in enumerate(texts)
    ]
    started = perf_counter()
    for i in range(0, len(msgs), batching.max_batch_size):
        pipeline.accept(msgs[i : i + batching.max_batch_size])
        if len(pipeline.batcher):
            pipeline.dispatch()  # as run() does when a batch is ready; overlap as configured
    pipeline.drain()
    elapsed = perf_counter() - started
    assert producer.count == len(msgs), (producer.count, len(msgs))
    return rate(len(msgs), elapsed)
