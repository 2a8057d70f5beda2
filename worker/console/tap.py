"""The console's Kafka side: read_committed consumer threads (the live view's over the
route topics and the DLQ; the learning loop's over the review, feedback and shadow
topics), the worker group's lag, and the producer of the console's own records.

A tap's consumer is assigned (no group, no commits: it only watches). The live tap starts
at the offsets of ``replay_s`` seconds ago, so a result committed between startup and the
first fetch is never skipped, and the live view opens with the last minute drawn; the
learning tap starts at the beginning of the topics' retention (the review queue and the
agreement figures are built from all of it). A tap reads what the producers' transactions
committed, nothing they aborted.
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
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from schemas.messages import ROUTES
from worker.console.views import SeenRecord
from worker.kafka.clients import REFUSED, refused_message, to_record
from worker.settings import KafkaSettings, WorkerSettings

log = structlog.get_logger("console")

MAX_HANDOFFS = 8  # batches of up to 501 records handed to the event loop, not yet taken


@dataclass(frozen=True)
class GroupState:
    """The workers' consumer group as Kafka sees it; None where a lookup failed."""

    group: str
    members: int | None
    state: str | None
    lag: int | None  # records on the inbound topic that the group has not committed yet
    checked_ms: float


def live_topics(settings: WorkerSettings) -> list[str]:
    """What the live view reads: the route topics and the DLQ."""
    return [settings.topics.for_route(r) for r in ROUTES] + [settings.topics.dlq]


class Tap(threading.Thread):
    """Reads every committed record of ``topics`` and hands each poll's records to
    ``on_records``, from this thread. ``replay_s`` None: from the beginning."""

    def __init__(
        self,
        settings: WorkerSettings,
        topics: list[str],
        on_records: Callable[[list[SeenRecord]], None],
        errors: ConsoleErrors,
        *,
        replay_s: float | None = 60.0,
        name: str = "console-tap",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.s = settings
        self.errors = errors
        self.topics = topics
        self.on_records = on_records
        self.replay_s = replay_s
        self.ready = threading.Event()  # assigned: a message produced now will be seen
        self.stopping = threading.Event()
        self.error: str | None = None
        self.unreadable = 0  # records that could not even be read (counted, skipped)
        # Released by the event loop when it has taken a batch (``on_records``'s receiver).
        self.handoffs = threading.BoundedSemaphore(MAX_HANDOFFS)
        self._assigned: set[tuple[str, int]] = set()

    def run(self) -> None:
        kafka = self.s.kafka
        consumer = Consumer(
            self.errors.client_config(
                **{
                    # Required by the client, never joined: the tap assigns, it never subscribes.
                    "group.id": f"support-router-console-{uuid.uuid4().hex[:8]}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    # The page shows latency: do not let an idle fetch sit on a new result
                    # for librdkafka's default 500 ms (20 fetches a second is nothing).
                    "fetch.wait.max.ms": 50,
                    # A bounded prefetch: the console keeps up or stops reading for a while.
                    "queued.max.messages.kbytes": 16 * 1024,
                }
            )
        )
        try:
            self._start(consumer)
            next_topics = time.monotonic() + 30
            while not self.stopping.is_set():
                try:
                    if time.monotonic() >= next_topics:  # partitions added since: from 0
                        next_topics = time.monotonic() + 30
                        self._assign_new(consumer, since_ms=None)
                    self._poll(consumer)
                except KafkaException as exc:  # the cluster is away: say so, keep trying
                    self.errors(exc.args[0])
                    self.stopping.wait(1)
        except Exception as exc:  # noqa: BLE001 - a defect: /healthz fails, the page says so
            self.error = kafka.scrub(f"{type(exc).__name__}: {exc}")
            log.error("console_tap_failed", error=self.error)
        finally:
            consumer.close()

    def _start(self, consumer: Consumer) -> None:
        """Assigned at the offsets of ``replay_s`` ago (or the beginning), retrying until
        the cluster answers (``replay_s`` before the try that succeeds: a long outage is not
        replayed)."""
        while not self.stopping.is_set():
            since_ms = None if self.replay_s is None else (time.time() - self.replay_s) * 1000
            try:
                self._assign_new(consumer, since_ms=since_ms)
            except KafkaException as exc:
                self.errors(exc.args[0])
                self.stopping.wait(2)
                continue
            self.ready.set()
            return

    def _poll(self, consumer: Consumer) -> None:
        # consume() waits out its whole timeout unless it fills the batch: wait for the
        # first record with poll(), then take whatever else is already here.
        first = consumer.poll(0.2)
        if first is None:
            return
        batch = [first, *consumer.consume(500, timeout=0)]
        read_ms = time.time() * 1000
        records = []
        for msg in batch:
            if msg.error() is not None:
                continue
            try:
                records.append(committed(msg, read_ms))
            except Exception as exc:  # noqa: BLE001 - untrusted bytes: count, never stop
                self.unreadable += 1
                log.warning("console_record_unreadable", error=f"{type(exc).__name__}: {exc}")
        if records:
            # Backpressure: at most MAX_HANDOFFS batches wait for the event loop; beyond
            # that the tap stops reading (it holds no group, so waiting costs nothing).
            while not self.handoffs.acquire(timeout=0.5):
                if self.stopping.is_set():
                    return
            self.on_records(records)

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
        log.info("console_assigned", tap=self.name, partitions=len(self._assigned))


class GroupWatch(threading.Thread):
    """Looks up the workers' group every ``every_s`` and hands it to ``on_group``.

    A thread and clients of its own: a watermark query on the tap's fetching consumer
    waits out that consumer's fetch for each partition, which would stall the tap.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        on_group: Callable[[GroupState], None],
        errors: ConsoleErrors,
        *,
        every_s: float = 2.0,
    ) -> None:
        super().__init__(name="console-group", daemon=True)
        self.s = settings
        self.errors = errors
        self.on_group = on_group
        self.every_s = every_s
        self.stopping = threading.Event()

    def run(self) -> None:
        admin = AdminClient(self.errors.client_config())
        # Never assigned and never subscribed: only metadata and watermark queries.
        consumer = Consumer(
            self.errors.client_config(
                **{"group.id": f"support-router-console-{uuid.uuid4().hex[:8]}"}
            )
        )
        try:
            while not self.stopping.is_set():
                self.on_group(group_state(admin, consumer, self.s, timeout=2.0))
                self.stopping.wait(self.every_s)
        finally:
            consumer.close()


class ConsoleErrors:
    """``error_cb`` for every client of the console: what the page shows, and the log.

    librdkafka reports an unreachable broker from each client, again on each reconnect
    (several a second while the broker is gone); each kind of error is
    logged at most once per ``every_s``, with how many were held back. A refused
    connection (credentials, TLS) is described as the worker describes it. The console
    keeps running either way: it reconnects when the cluster does.
    """

    def __init__(self, kafka: KafkaSettings, every_s: float = 30.0) -> None:
        self.kafka = kafka
        self.every_s = every_s
        self.last: tuple[float, str] | None = None  # (epoch s, text) of the latest error
        self._logged: dict[int, float] = {}
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()  # clients call back from their own threads

    def __call__(self, err: KafkaError) -> None:
        code = err.code()
        text = self.kafka.scrub(err.str())
        if code in REFUSED:
            text = refused_message(self.kafka, code, text)
        now = time.time()
        with self._lock:
            self.last = (now, text)
            if now - self._logged.get(code, 0.0) < self.every_s:
                self._held[code] = self._held.get(code, 0) + 1
                return
            self._logged[code] = now
            held = self._held.pop(code, 0)
        log.warning("console_kafka_error", code=err.name(), error=text, held_back=held)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A console client's config: errors through this object, and librdkafka's own
        log lines (a FAIL line per connection attempt, many a second per client while
        the broker is gone) only from level 2 (critical) up: they say what error_cb says.
        """
        return self.kafka.librdkafka(**{"error_cb": self, "log_level": 2, **overrides})

    def recent(self, within_s: float = 15.0) -> str | None:
        last = self.last
        return last[1] if last is not None and time.time() - last[0] < within_s else None


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


def committed(msg: Message, read_ms: float) -> SeenRecord:
    """A consumed record as the views read it. Through the worker's own ``to_record``:
    never ``Message.headers()``, which a header key that is not UTF-8 turns into a crash
    of the process (worker/kafka/headers.py); such a key is left out here."""
    r = to_record(msg)
    return SeenRecord(r.topic, r.partition, r.offset, r.timestamp_ms, r.value, r.headers, read_ms)


class Submitter:
    """Produces the console's own records (idempotent, acks=all): tried messages to the
    inbound topic, agents' corrections to the feedback topic."""

    def __init__(
        self, settings: WorkerSettings, errors: ConsoleErrors, timeout_s: float = 10
    ) -> None:
        self.s = settings
        self.timeout_s = timeout_s
        self._producer = Producer(
            errors.client_config(
                **{
                    "enable.idempotence": True,
                    "linger.ms": 0,
                    "client.id": "support-console",
                    # librdkafka gives up on the record itself at this point, so "not sent"
                    # on the page is final: the record cannot arrive later as a duplicate
                    # of the one the user sends again.
                    "message.timeout.ms": int(timeout_s * 1000),
                }
            )
        )

    def send(self, topic: str, message_id: str, value: bytes) -> dict[str, Any]:
        """Blocks until the broker has the record (keyed by ``message_id``) or librdkafka
        gave up on it; returns its coordinates and timestamp, or ``error``."""
        done: dict[str, Any] = {}

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                done["error"] = self.s.kafka.scrub(err.str())
            else:
                done.update(partition=msg.partition(), offset=msg.offset(), ts=msg.timestamp()[1])

        try:
            self._producer.produce(
                topic,
                key=message_id.encode(),
                value=value,
                headers=[("content-type", b"application/json")],
                on_delivery=delivered,
            )
        except (KafkaException, BufferError) as exc:  # e.g. larger than message.max.bytes
            return {"error": self.s.kafka.scrub(str(exc))}
        self._producer.flush(self.timeout_s + 5)  # the delivery report comes by then
        if not done:
            done["error"] = f"no delivery report within {self.timeout_s + 5:.0f} s"
        return done

    def close(self) -> None:
        self._producer.flush(5)
