"""What a chaos scenario produces: messages with unique ids, at a steady rate or at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer

from tests.chaos.fuzz import WireHeaders, expected_place
from tests.chaos.report import Inputs, Sent
from tests.integration.worker.harness import MALFORMED, message

ROUTE = frozenset({"route"})


@dataclass(frozen=True)
class Record:
    sent: Sent
    key: bytes | None
    value: bytes | None
    headers: WireHeaders  # keys as bytes: the raw producer sends them as they are
    partition: int | None = None


def good(
    i: int, prefix: str, text: str | None = None, kind: str = "good", expect: frozenset[str] = ROUTE
) -> Record:
    """The integration harness's message i, with an id unique to this scenario."""
    msg = message(i, text=text)
    msg["message_id"] = f"{prefix}{i}"
    sent = Sent(msg["message_id"], kind, expect, msg["message_id"])
    return Record(
        sent,
        str(msg["conversation_id"]).encode(),
        json.dumps(msg).encode(),
        [(b"traceparent", f"00-{prefix}{i}-01".encode())],
    )


def bad(i: int, prefix: str) -> Record:
    """One of the harness's malformed values; where it must land comes from the codec."""
    value = MALFORMED[i % len(MALFORMED)]
    key = f"{prefix}bad-{i}".encode()
    sent = Sent(f"{prefix}bad-{i}", "bad", frozenset(expected_place(key, value, [])))
    return Record(sent, key, value, [])


def mixed(
    prefix: str,
    bad_every: int = 0,
    nonempty: bool = False,
    mark: Callable[[int], Record | None] | None = None,
) -> Iterator[Record]:
    """An endless stream: good messages, every bad_every-th malformed, ``mark`` overriding."""
    i = 0
    while True:
        special = mark(i) if mark else None
        if special is not None:
            yield special
        elif bad_every and i % bad_every == bad_every - 1:
            yield bad(i, prefix)
        else:
            text = None
            if nonempty and not message(i)["text"].strip():
                text = "please call me back about my bill"
            yield good(i, prefix, text)
        i += 1


class Feeder:
    """A producer whose delivery reports fill each Sent's inbound partition and offset."""

    def __init__(self, bootstrap: str, topic: str, inputs: Inputs, **conf: Any) -> None:
        self.topic, self.inputs = topic, inputs
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True, **conf}
        )
        self.producer.list_topics(topic, timeout=30)
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.produced = 0

    def send(self, rec: Record) -> None:
        sent = self.inputs.add(rec.sent)

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                sent.error = str(err)
            else:
                sent.partition, sent.offset = msg.partition(), msg.offset()

        extra: dict[str, Any] = {} if rec.partition is None else {"partition": rec.partition}
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=rec.value,
                    key=rec.key,
                    headers=[(k.decode(), v) for k, v in rec.headers],
                    on_delivery=delivered,
                    **extra,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.produced += 1
        self.producer.poll(0)

    def send_all(self, records: Iterator[Record] | list[Record], timeout: float = 60) -> None:
        for rec in records:
            self.send(rec)
        self.flush(timeout)

    def steady(self, records: Iterator[Record], n: int, rate: float) -> None:
        """Produce n records at ``rate`` per second in a thread (``join`` waits for it)."""

        def run() -> None:
            start = time.monotonic()
            for i in range(n):
                if self._stop.is_set():
                    break
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.send(next(records))
            self.flush(120)

        self.thread = threading.Thread(target=run, name="chaos-feeder", daemon=True)
        self.thread.start()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def flush(self, timeout: float) -> int:
        return int(self.producer.flush(timeout))

    def stop(self) -> None:
        self._stop.set()
        self.join(30)
        self.flush(10)


def raw_producer() -> tuple[Any, str]:
    """tests/integration/raw_produce.py's ``produce_raw``, or None and why not.

    confluent-kafka's Producer cannot send a header key that is not UTF-8 (it str()s a
    bytes key), so those records need raw librdkafka.
    """
    try:
        from tests.integration import raw_produce
    except ImportError:
        return None, "tests/integration/raw_produce.py is not there"
    fn = getattr(raw_produce, "produce_raw", None)
    if not callable(fn):
        return None, "tests/integration/raw_produce.py has no produce_raw()"
    return fn, ""


def send_raw(bootstrap: str, topic: str, inputs: Inputs, records: list[Record]) -> None:
    """All of them in order to partition 0 through raw librdkafka (idempotent, acked).

    Its offsets are the partition's end before + the index, so nothing else may produce
    to that partition meanwhile; the end after is checked.
    """
    from confluent_kafka import Consumer, TopicPartition

    produce_raw, why = raw_producer()
    if produce_raw is None:
        raise RuntimeError(why)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-watermarks"})
    try:
        tp = TopicPartition(topic, 0)
        before = c.get_watermark_offsets(tp, timeout=30, cached=False)[1]
        produce_raw(bootstrap, topic, [(r.key, r.value, r.headers) for r in records], 0)
        after = c.get_watermark_offsets(tp, timeout=30, cached=False)[1]
    finally:
        c.close()
    for i, rec in enumerate(records):
        sent = inputs.add(rec.sent)
        sent.partition, sent.offset = 0, before + i
        if after != before + len(records):
            sent.error = f"end offset moved {before} -> {after} for {len(records)} records"
