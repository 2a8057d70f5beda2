"""Thin confluent-kafka adapters: client configs, and Message -> codec.Record."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message, Producer

from worker.codec import Headers, Record
from worker.kafka_headers import RawHeaders, read_headers
from worker.metrics import Metrics
from worker.settings import WorkerSettings

# Results carry the inbound message; room for a max-size inbound record plus our fields.
MAX_RECORD_BYTES = 4 * 1024 * 1024
# Bounded prefetch: a slow model slows fetching instead of growing memory.
PREFETCH_KBYTES = 16 * 1024


def to_record(msg: Message) -> Record:
    ts_type, ts = msg.timestamp()
    # Never msg.headers(): it crashes the process on a key that is not UTF-8 (kafka_headers).
    headers, header_error = _headers(read_headers(msg))
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        timestamp_ms=ts if ts_type != 0 else None,
        header_error=header_error,
    )


def _headers(raw: RawHeaders) -> tuple[Headers, str | None]:
    """Keys as strict UTF-8 (no surrogates: the producer cannot encode those either).

    A key that is not stays out of the headers, so it never reaches a producer, and is
    named, escaped, in the error that makes the record a dead letter.
    """
    headers: Headers = []
    bad: list[str] = []
    for i, (key, value) in enumerate(raw):
        try:
            headers.append((key.decode("utf-8"), value))
        except UnicodeDecodeError:
            bad.append(f"header {i} key is not valid UTF-8: {_escaped(key)}")
    if not bad:
        return headers, None
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return headers, bad[0] + more


def _escaped(raw: bytes, limit: int = 64) -> str:
    return repr(raw[:limit]) + ("..." if len(raw) > limit else "")


def consumer_config(s: WorkerSettings, metrics: Metrics) -> dict[str, Any]:
    conf = s.kafka.librdkafka(
        **{
            "group.id": s.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Only committed results of upstream transactional producers count.
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "session.timeout.ms": s.session_timeout_ms,
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "fetch.message.max.bytes": MAX_RECORD_BYTES,
        }
    )
    if s.statistics_interval_ms:
        conf["statistics.interval.ms"] = s.statistics_interval_ms
        conf["stats_cb"] = metrics.on_stats
    if s.group_instance_id:
        conf["group.instance.id"] = s.group_instance_id
    return conf


def producer_config(s: WorkerSettings) -> dict[str, Any]:
    conf = s.kafka.librdkafka(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": MAX_RECORD_BYTES,
            "compression.type": "lz4",
        }
    )
    if s.mode == "exactly_once":
        conf["transactional.id"] = s.transactional_id
        conf["transaction.timeout.ms"] = s.transaction_timeout_ms
    return conf


def make_consumer(s: WorkerSettings, metrics: Metrics) -> Consumer:
    return Consumer(consumer_config(s, metrics))


def make_producer(s: WorkerSettings) -> Producer:
    return Producer(producer_config(s))
