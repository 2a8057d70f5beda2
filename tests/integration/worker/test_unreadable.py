"""Record batches the Kafka client cannot read never stall their partition.

librdkafka reports a batch it cannot decompress (here: one that inflates past the
worker's ``receive.message.max.bytes``) as a consumer error at the batch's base offset,
and fetches it again after every backoff, forever. The worker dead-letters a pointer
for the smallest unreadable span, commits past it in the same transaction, and routes
every record behind it exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from tests.integration.worker.harness import make_topics, read_committed, running_worker
from worker.kafka.clients import consumer_config
from worker.metrics import Metrics
from worker.settings import WorkerSettings

# librdkafka's own default, for a worker that does not set it
LIBRDKAFKA_RECEIVE_MAX = 100_000_000


def receive_max_bytes() -> int:
    conf = consumer_config(WorkerSettings(), Metrics())
    return int(conf.get("receive.message.max.bytes", LIBRDKAFKA_RECEIVE_MAX))


def _good(bootstrap: str, topic: str, ids: range) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in ids:
        value = json.dumps({"message_id": f"m{i}", "text": "where is my refund"}).encode()
        p.produce(topic, key=f"k{i}".encode(), value=value, partition=0)
    assert p.flush(30) == 0


def _inflating_batch(bootstrap: str, topic: str, records: int, limit: int) -> None:
    """``records`` zstd records in ONE batch whose values inflate past ``limit`` together.

    A few KB on the wire, so the broker takes it (it checks the compressed size); the
    consumer's decompression stops at receive.message.max.bytes.
    """
    size = limit // records + 1024 * 1024
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": "zstd",
            "message.max.bytes": 1_000_000_000,
            "batch.size": 2_000_000_000,
            "batch.num.messages": records,
            "linger.ms": 2000,  # all of them in one batch
        }
    )
    for n in range(records):
        value = b'{"message_id": "bomb", "text": "' + b"a" * size + b'"}'
        p.produce(topic, key=f"bomb{n}".encode(), value=value, partition=0)
        del value
    assert p.flush(60) == 0


def test_an_undecompressible_batch_becomes_one_pointer_and_the_partition_moves_on(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    limit = receive_max_bytes()
    topics = make_topics(make_topic, partitions=1)
    _good(kafka_bootstrap, topics.inbound, range(3))  # offsets 0-2
    _inflating_batch(kafka_bootstrap, topics.inbound, 3, limit)  # 3-5: one batch of 3
    _good(kafka_bootstrap, topics.inbound, range(3, 10))  # 6-12
    _inflating_batch(kafka_bootstrap, topics.inbound, 1, limit)  # 13: a single record
    _inflating_batch(kafka_bootstrap, topics.inbound, 1, limit)  # 14: right behind it
    _good(kafka_bootstrap, topics.inbound, range(10, 30))  # 15-34
    with running_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path) as w:
        got = read_committed(kafka_bootstrap, topics, 33, timeout=90)
        routed = sorted(v["message_id"] for _, v, _ in got.results)
        assert routed == sorted(f"m{i}" for i in range(30)), w.tail()
        spans = sorted(
            (int(h["x-source-offset"]), int(h["x-source-offset-last"])) for _, h in got.dead
        )
        assert spans == [(3, 5), (13, 13), (14, 14)], got.dead
        for key, headers in got.dead:
            assert key == ""  # a pointer: no key, no value, headers only
            assert headers["x-dead-letter-pointer"] == b"1"
            assert headers["x-error-stage"] == b"fetch"
            assert headers["x-error-type"] == b"_BAD_COMPRESSION"
            assert headers["x-source-topic"] == topics.inbound.encode()
            assert headers["x-source-partition"] == b"0"
            assert b"ecompress" in headers["x-error-message"]
        assert w.metric("support_unreadable_spans_total") == 3
        assert w.metric("support_unreadable_offsets_total") == 5
        assert w.proc.poll() is None
