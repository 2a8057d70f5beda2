"""A partition whose committed offset an open transaction holds starts where that
transaction leaves it, never at auto.offset.reset.

librdkafka 2.16 asks the coordinator for stable offsets (KIP-447) and asks again while a
previous owner's transaction is open. If the member's assignment changes meanwhile, the
answer is dropped and the partition starts at OFFSET_INVALID, i.e. auto.offset.reset:
the whole log routed a second time. A chaos crash storm found it (a SIGKILLed owner
left a transaction open; the new owner got two more partitions 6 s later and routed
311 records again). Here: committed offset 50, a "previous owner" whose open
transaction holds 60, a second member that leaves so that the worker's assignment
grows while it waits; then the transaction commits. Exactly 60-99 must be routed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration.worker.harness import (
    make_topics,
    message,
    read_committed,
    start_worker,
)

PARTITIONS, PER_PARTITION, COMMITTED, HELD = 2, 100, 50, 60


def _produce(bootstrap: str, topic: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for part in range(PARTITIONS):
        for i in range(part * PER_PARTITION, (part + 1) * PER_PARTITION):
            p.produce(topic, value=json.dumps(message(i)).encode(), partition=part)
    assert p.flush(30) == 0


def _member(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
        }
    )


def _keep_polling(c: Consumer, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            c.poll(0.2)
        c.close()  # leaves the group: the worker's assignment grows

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_an_assignment_waits_for_the_open_transaction_and_starts_where_it_ends(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic, partitions=PARTITIONS)
    _produce(kafka_bootstrap, topics.inbound)
    tag = uuid.uuid4().hex[:8]
    group = f"g-{tag}"
    parts = [TopicPartition(topics.inbound, p) for p in range(PARTITIONS)]

    first = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    first.commit(
        offsets=[TopicPartition(tp.topic, tp.partition, COMMITTED) for tp in parts],
        asynchronous=False,
    )
    meta = first.consumer_group_metadata()
    first.close()
    previous_owner = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"prev-{tag}"}
    )
    previous_owner.init_transactions(30)
    previous_owner.begin_transaction()
    previous_owner.send_offsets_to_transaction(
        [TopicPartition(tp.topic, tp.partition, HELD) for tp in parts], meta, 30
    )

    other, stop = _member(kafka_bootstrap, group), threading.Event()
    other.subscribe([topics.inbound])
    poller = _keep_polling(other, stop)
    w = start_worker(
        kafka_bootstrap, topics, smoke_artifact, tmp_path, group=group, txn_id=f"t-{tag}"
    )
    try:
        w.wait_ready()
        deadline = time.monotonic() + 60
        while not any(
            e.get("event") == "partitions_assigned" and e.get("partitions") for e in w.log_lines()
        ):
            assert time.monotonic() < deadline, w.tail()
            time.sleep(0.2)
        time.sleep(1.0)  # the worker is asking for its first partition's offset now
        stop.set()
        poller.join(30)
        time.sleep(3.0)  # ... and got the other partition meanwhile
        previous_owner.commit_transaction(30)

        expect = {
            message(i)["message_id"]
            for p in range(PARTITIONS)
            for i in range(p * PER_PARTITION + HELD, (p + 1) * PER_PARTITION)
        }
        got = read_committed(kafka_bootstrap, topics, len(expect), timeout=90)
        routed = [v["message_id"] for _, v, _ in got.results]
        early = sorted(set(routed) - expect)
        assert not early, f"routed before offset {HELD}: {early[:5]}...\n{w.tail()}"
        assert sorted(routed) == sorted(expect), w.tail()
        assert not got.dead
    finally:
        stop.set()
        w.kill()
