"""Smoke: transactions work end to end on the real broker (the worker's commit path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition


def _read_all(bootstrap: str, topic: str, isolation: str, expect_at_least: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    idle_polls = 0
    while time.monotonic() < deadline and (len(values) < expect_at_least or idle_polls < 3):
        msgs = consumer.consume(num_messages=100, timeout=0.5)
        idle_polls = 0 if msgs else idle_polls + 1
        for msg in msgs:
            assert msg.error() is None, msg.error()
            values.append(msg.value())
    consumer.close()
    return values


def test_committed_records_are_visible_and_aborted_ones_are_not(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("smoke.txn")
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"smoke-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"committed-1-{i}".encode())
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"aborted-{i}".encode())
    producer.flush(30)  # the aborted records really reach the log before the abort
    producer.abort_transaction(30)

    # A commit after the abort: a read_committed reader that reaches it has read past
    # the aborted range, so their absence is not merely "not read yet".
    producer.begin_transaction()
    producer.produce(topic, b"committed-2-0")
    producer.commit_transaction(30)

    committed = _read_all(kafka_bootstrap, topic, "read_committed", expect_at_least=6)
    assert committed == [f"committed-1-{i}".encode() for i in range(5)] + [b"committed-2-0"]

    everything = _read_all(kafka_bootstrap, topic, "read_uncommitted", expect_at_least=11)
    assert sum(v.startswith(b"aborted-") for v in everything) == 5
