"""Thin confluent-kafka adapters: client configs, and Message -> codec.Record."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message, Producer

from worker.codec import Record
from worker.metrics import Metrics
from worker.settings import WorkerSettings

# Results carry the inbound message; room for a max-size inbound record plus our fields.
MAX_RECORD_BYTES = 4 * 1024 * 1024
# Bounded prefetch: a slow model slows fetching instead of growing memory.
PREFETCH_KBYTES = 16 * 1024


def to_record(msg: Message) -> Record:
    ts_type, ts = msg.timestamp()
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=_headers(msg.headers()),
        timestamp_ms=ts if ts_type != 0 else None,
    )


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    # The stubs say list | dict; librdkafka hands the consumer a list of (str, bytes|None).
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]


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
