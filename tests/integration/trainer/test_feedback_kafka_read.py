"""The collector's Kafka adapter on a real broker: fetching records by coordinates."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Producer

from trainer.feedback import kafka_read
from worker.settings import KafkaSettings, WorkerSettings


def test_fetch_finds_sparse_records_and_reports_gone_ones_as_none(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("fetch", 2)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(600):  # offsets 0..599
        p.produce(topic, value=f"p0-{i}".encode(), partition=0)
    p.produce(topic, value=b"p1-0", partition=1)
    assert p.flush(30) == 0
    txn = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": uuid.uuid4().hex})
    txn.init_transactions(30)
    txn.begin_transaction()
    txn.produce(topic, value=b"aborted", partition=0)  # offset 600
    assert txn.flush(30) == 0  # written: an abort before delivery would only purge it
    txn.abort_transaction(30)
    # The coordinator writes the abort marker on its own time: before or after this one.
    tail: list[int] = []
    p.produce(
        topic,
        value=b"tail",
        partition=0,
        on_delivery=lambda _e, msg: tail.append(msg.offset() or -1),
    )
    assert p.flush(30) == 0

    settings = WorkerSettings(kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap))
    c = kafka_read.consumer(settings, f"fetch-{uuid.uuid4().hex}", kafka_read.QuietErrors(settings))
    # 9999: past the end (a topic deleted and made again): gone, not waited for.
    wanted = [(topic, 0, o) for o in (0, 1, 57, 58, 150, 449, 600, tail[0], 9999)]
    wanted.append((topic, 1, 0))
    started = time.monotonic()
    try:
        got = kafka_read.fetch(c, reversed(wanted), started + 60)
        # The collector fetches in batches with one consumer: a partition done (paused)
        # in one batch must be fetched again in the next.
        again = kafka_read.fetch(c, [(topic, 0, 3), (topic, 1, 0)], started + 60)
    finally:
        c.close()
    assert time.monotonic() - started < 20
    assert {k: r.value for k, r in again.items() if r is not None} == {
        (topic, 0, 3): b"p0-3",
        (topic, 1, 0): b"p1-0",
    }
    assert set(got) == set(wanted)
    values = {o: None if r is None else r.value for (_, p_, o), r in got.items() if p_ == 0}
    assert values == {
        0: b"p0-0",
        1: b"p0-1",
        57: b"p0-57",
        58: b"p0-58",
        150: b"p0-150",
        449: b"p0-449",
        600: None,  # aborted: read_committed never shows it
        tail[0]: b"tail",
        9999: None,
    }
    one = got[(topic, 1, 0)]
    assert one is not None and (one.value, one.partition, one.offset) == (b"p1-0", 1, 0)
