"""The console's Kafka side: one read_committed consumer thread over the route topics and
the DLQ, the worker group's lag, and the producer of the console's own messages.

The tap's consumer is assigned (no group, no commits: it only watches) at the offsets of
``replay_s`` seconds ago, so a result committed between startup and the first fetch is
never skipped, and the live view opens with the last minute drawn. It reads what the
workers' transactions committed, nothing they aborted.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from schemas.messages import ROUTES
from worker.console.views import Committed
from worker.settings import KafkaSettings, WorkerSettings

log = structlog.get_logger("console")


@dataclass(frozen=True)
class GroupState:
    """The workers' consumer group as Kafka sees it; None where a lookup failed."""

    group: str
    members: int | None
    state: str | None
    lag: int | None  # records on the inbound topic that the group has not committed yet
    checked_ms: float


class Tap(threading.Thread):
    """Reads every committed record of the route topics and the DLQ, and hands each
    poll's records to ``on_records``, from this thread."""

    def __init__(
        self,
        settings: WorkerSettings,
        on_records: Callable[[list[Committed]], None],
        *,
        replay_s: float = 60.0,
    ) -> None:
        super().__init__(name="console-tap", daemon=True)
        self.s = settings
        self.topics = [settings.topics.for_route(r) for r in ROUTES] + [settings.topics.dlq]
        self.on_records = on_records
        self.replay_s = replay_s
        self.ready = threading.Event()  # assigned: a message produced now will be seen
        self.stopping = threading.Event()
        self.error: str | None = None
        self._assigned: set[tuple[str, int]] = set()

    def run(self) -> None:
        kafka = self.s.kafka
        consumer = Consumer(
            kafka.librdkafka(
                **{
                    # Required by the client, never joined: the tap assigns, it never subscribes.
                    "group.id": f"support-router-console-{uuid.uuid4().hex[:8]}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    # The page shows latency: do not let an idle fetch sit on a new result
                    # for librdkafka's default 500 ms (20 fetches a second is nothing).
                    "fetch.wait.max.ms": 50,
                    "error_cb": _client_error(kafka),
                }
            )
        )
        try:
            self._assign_new(consumer, since_ms=time.time() * 1000 - self.replay_s * 1000)
            self.ready.set()
            next_topics = time.monotonic() + 30
            while not self.stopping.is_set():
                if time.monotonic() >= next_topics:  # partitions added since: from their start
                    self._assign_new(consumer, since_ms=None)
                    next_topics = time.monotonic() + 30
                # consume() waits out its whole timeout unless it fills the batch: wait for
                # the first record with poll(), then take whatever else is already here.
                first = consumer.poll(0.2)
                if first is None:
                    continue
                batch = [first, *consumer.consume(500, timeout=0)]
                read_ms = time.time() * 1000
                records = [_committed(msg, read_ms) for msg in batch if msg.error() is None]
                if records:
                    self.on_records(records)
        except Exception as exc:  # noqa: BLE001 - reported on the page, the app stays up
            self.error = kafka.scrub(f"{type(exc).__name__}: {exc}")
            log.error("console_tap_failed", error=self.error)
        finally:
            consumer.close()

    def _assign_new(self, consumer: Consumer, since_ms: float | None) -> None:
        meta = consumer.list_topics(timeout=10)
        new = []
        for topic in self.topics:
            t = meta.topics.get(topic)
            if t is None or t.error is not None:
                continue
            for p in t.partitions:
                if (topic, p) not in self._assigned:
                    new.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        if not new:
            return
        if since_ms is not None:
            # The first offset at or after that time per partition; -1 (none that late): end.
            asked = [TopicPartition(tp.topic, tp.partition, int(since_ms)) for tp in new]
            found = consumer.offsets_for_times(asked, timeout=10)
            for tp in found:
                if tp.offset < 0:
                    tp.offset = consumer.get_watermark_offsets(tp, timeout=10)[1]
            new = found
        consumer.incremental_assign(new)
        self._assigned.update((tp.topic, tp.partition) for tp in new)
        log.info("console_assigned", partitions=len(self._assigned))


class GroupWatch(threading.Thread):
    """Looks up the workers' group every ``every_s`` and hands it to ``on_group``.

    A thread and clients of its own: a watermark query on the tap's fetching consumer
    waits out its fetch (0.5 s a partition, measured), which would stall the tap.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        on_group: Callable[[GroupState], None],
        *,
        every_s: float = 2.0,
    ) -> None:
        super().__init__(name="console-group", daemon=True)
        self.s = settings
        self.on_group = on_group
        self.every_s = every_s
        self.stopping = threading.Event()

    def run(self) -> None:
        kafka = self.s.kafka
        errors = _client_error(kafka)
        admin = AdminClient(kafka.librdkafka(error_cb=errors))
        # Never assigned and never subscribed: only metadata and watermark queries.
        consumer = Consumer(
            kafka.librdkafka(
                **{"group.id": f"support-router-console-{uuid.uuid4().hex[:8]}", "error_cb": errors}
            )
        )
        try:
            while not self.stopping.is_set():
                self.on_group(group_state(admin, consumer, self.s, timeout=2.0))
                self.stopping.wait(self.every_s)
        finally:
            consumer.close()


def _client_error(kafka: KafkaSettings) -> Callable[[KafkaError], None]:
    def log_it(err: KafkaError) -> None:
        log.warning("console_kafka_error", error=kafka.scrub(str(err)))

    return log_it


def group_state(
    admin: AdminClient, consumer: Consumer, s: WorkerSettings, timeout: float
) -> GroupState:
    """Members and lag of the workers' group (settings.group_id) on the inbound topic."""
    members = state = lag = None
    group = s.group_id
    try:
        described = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
        desc = described.result(timeout=timeout)
        members, state = len(desc.members), str(desc.state.name)
    except (KafkaException, TimeoutError, ValueError) as exc:
        log.debug("console_group_unknown", error=str(exc))
    try:
        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
        )
        committed = {
            tp.partition: tp.offset
            for tp in futures[group].result(timeout=timeout).topic_partitions or []
            if tp.topic == s.topics.inbound
        }
        meta = consumer.list_topics(s.topics.inbound, timeout=timeout).topics[s.topics.inbound]
        if meta.error is None:
            lag = 0
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(s.topics.inbound, p), timeout=timeout
                )
                done = committed.get(p, -1)
                lag += max(0, high - (done if done >= 0 else low))
    except (KafkaException, TimeoutError, ValueError) as exc:
        log.debug("console_lag_unknown", error=str(exc))
    return GroupState(group, members, state, lag, time.time() * 1000)


def _committed(msg: Any, read_ms: float) -> Committed:
    kind, ts = msg.timestamp()
    return Committed(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        timestamp_ms=ts if kind != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
        value=msg.value(),
        headers=list(msg.headers() or []),
        read_ms=read_ms,
    )


class Submitter:
    """Produces the console's own messages to the inbound topic (idempotent, acks=all)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.s = settings
        self._producer = Producer(
            settings.kafka.librdkafka(
                **{"enable.idempotence": True, "linger.ms": 0, "client.id": "support-console"}
            )
        )

    def send(self, message_id: str, value: bytes, timeout: float = 10.0) -> dict[str, Any]:
        """Blocks until the broker has the record; returns its coordinates and timestamp."""
        done: dict[str, Any] = {}

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                done["error"] = self.s.kafka.scrub(err.str())
            else:
                done.update(partition=msg.partition(), offset=msg.offset(), ts=msg.timestamp()[1])

        try:
            self._producer.produce(
                self.s.topics.inbound,
                key=message_id.encode(),
                value=value,
                headers=[("content-type", b"application/json")],
                on_delivery=delivered,
            )
        except (KafkaException, BufferError) as exc:  # e.g. larger than message.max.bytes
            return {"error": self.s.kafka.scrub(str(exc))}
        self._producer.flush(timeout)
        if not done:
            done["error"] = f"not acknowledged within {timeout:.0f} s"
        return done

    def close(self) -> None:
        self._producer.flush(5)
