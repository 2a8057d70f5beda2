"""The thin Kafka side of reading: consumers, topic ends, reading up to a snapshot, and
fetching single records by their coordinates. Records come out as ``worker.codec.Record``
(through ``worker.kafka.clients.to_record``, which never crashes on a bad header key)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from trainer.feedback.errors import FeedbackError, KafkaUnreachableError
from worker.codec import Record
from worker.kafka.clients import REFUSED, ClientErrors, Refusals, consumer_options, to_record
from worker.kafka.transaction import Disposition, classify
from worker.settings import WorkerSettings

POLL_S: Final = 0.5
# Fetching by coordinates: a wanted record at most this many offsets ahead is reached by
# reading on; farther, a seek (which drops the prefetched data, a round trip) is cheaper.
SEEK_GAP: Final = 100

_PAST_ANY_OFFSET: Final = 2**63
Partition = tuple[str, int]  # (topic, partition)
Coordinates = tuple[str, int, int]  # (topic, partition, offset)


class QuietErrors:
    """``error_cb``: a refused login or TLS failure is fatal at once (one line, exit 1);
    anything else is librdkafka retrying, bounded by the run's deadline, and stays quiet
    so that a broker away reads as one error at the end, not a warning per reconnect."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._fatal = ClientErrors(settings.kafka, Refusals())

    def __call__(self, err: KafkaError) -> None:
        if err.code() in REFUSED:
            self._fatal(err)


def consumer(settings: WorkerSettings, group: str, errors: QuietErrors) -> Consumer:
    """A read_committed consumer that never commits by itself (the collector does, or no one)."""
    conf = consumer_options(
        settings.kafka,
        group,
        errors,
        log_level=0,
        **{"enable.partition.eof": True},  # how a partition's end shows
    )
    return Consumer(conf)


def topic_partitions(
    c: Consumer, settings: WorkerSettings, topics: Iterable[str], timeout: float
) -> dict[str, list[int]]:
    """Partitions per topic that exists (a missing one is left out), or unreachable."""
    where = settings.kafka.bootstrap_servers
    try:
        md = c.list_topics(timeout=timeout)  # all topics: never auto-creates one
    except KafkaException as exc:
        raise KafkaUnreachableError(
            f"cannot reach Kafka at {where} within {timeout:.0f}s: {_text(exc)}"
        ) from None
    out = {}
    for name in topics:
        t = md.topics.get(name)
        if t is not None and t.error is None and t.partitions:
            out[name] = sorted(t.partitions)
    return out


def watermarks(
    c: Consumer, parts: Iterable[Partition], timeout: float
) -> dict[Partition, tuple[int, int]]:
    """(low, high) per partition: where its records begin and, now, end."""
    try:
        return {
            (t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=timeout) for t, p in parts
        }
    except KafkaException as exc:
        raise KafkaUnreachableError(f"reading topic ends: {_text(exc)}") from None


def committed(c: Consumer, parts: Iterable[Partition], timeout: float) -> dict[Partition, int]:
    """The consumer group's committed offsets (negative: none), stable ones only."""
    try:
        got = c.committed([TopicPartition(t, p) for t, p in parts], timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnreachableError(f"reading the group's offsets: {_text(exc)}") from None
    return {(tp.topic, tp.partition): tp.offset for tp in got}


@dataclass
class Span:
    """One partition's part of a run: from ``start`` up to ``end`` (the snapshot)."""

    start: int
    end: int
    position: int  # the next offset to read

    @property
    def done(self) -> bool:
        return self.position >= self.end


def span(low: int, high: int, start: int) -> Span:
    """From ``start`` (negative: unknown), never below what retention kept; from the
    beginning when ``start`` lies past the end (the topic was deleted and made again)."""
    first = low if start > high else max(low, start)
    return Span(first, max(high, first), first)


OnChunk = Callable[[list[Record], dict[Partition, int]], None]


def read(
    c: Consumer, spans: dict[Partition, Span], batch: int, deadline: float, on_chunk: OnChunk
) -> bool:
    """Read every span to its end, handing each chunk and the positions after it to
    ``on_chunk``; True when all ended, False when the deadline came first."""
    todo = [k for k, s in spans.items() if not s.done]
    if not todo:
        return True
    c.assign([TopicPartition(t, p, spans[(t, p)].position) for t, p in todo])
    last = {k: s.position for k, s in spans.items()}
    try:
        while not all(s.done for s in spans.values()) and time.monotonic() < deadline:
            records = []
            for msg in c.consume(batch, timeout=POLL_S):
                key = (msg.topic() or "", msg.partition() or 0)
                s = spans.get(key)
                if s is None or s.done:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # The end read_committed sees: past commit markers and aborted data.
                        s.position = max(s.position, min(msg.offset() or 0, s.end))
                    else:
                        _consume_error(err, key)
                    continue
                offset = msg.offset() or 0
                if offset < s.position:
                    continue
                if offset >= s.end:  # arrived after the snapshot: the next run's
                    s.position = s.end
                    continue
                records.append(to_record(msg))
                s.position = offset + 1
            now = {k: s.position for k, s in spans.items()}
            if records or now != last:
                on_chunk(records, now)
                last = now
    finally:
        c.unassign()
    return all(s.done for s in spans.values())


def fetch(
    c: Consumer, wanted: Iterable[Coordinates], deadline: float, batch: int = 500
) -> dict[Coordinates, Record | None]:
    """The records at ``wanted`` coordinates; None for one that is gone (retention, an
    aborted transaction, a topic made again). One left out was not reached in time."""
    offsets: dict[Partition, list[int]] = {}
    for t, p, o in sorted(set(wanted)):
        offsets.setdefault((t, p), []).append(o)
    found: dict[Coordinates, Record | None] = {}
    if not offsets:
        return found
    cursor = dict.fromkeys(offsets, 0)  # index of the next wanted offset per partition
    # Where each partition was last sent. Never twice to one offset: one out of range
    # resets to the earliest (auto.offset.reset), and seeking there again would loop.
    sent = {k: o[0] for k, o in offsets.items()}
    open_ = set(offsets)
    c.assign([TopicPartition(t, p, o[0]) for (t, p), o in offsets.items()])
    try:
        while open_ and time.monotonic() < deadline:
            sought: set[Partition] = set()  # the rest of this batch predates a seek
            for msg in c.consume(batch, timeout=POLL_S):
                key = (msg.topic() or "", msg.partition() or 0)
                if key not in open_ or key in sought:
                    continue
                wants, i = offsets[key], cursor[key]
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    _consume_error(err, key)
                    continue
                # Passed without it, it is gone. At the end, so is every offset still
                # wanted: each was read (read_committed) below the end once, and the end
                # only moves on, unless the topic was deleted and made again.
                at = (msg.offset() or 0) if err is None else _PAST_ANY_OFFSET
                while i < len(wants) and wants[i] < at:
                    found[(*key, wants[i])] = None
                    i += 1
                if err is None and i < len(wants) and wants[i] == at:
                    found[(*key, at)] = to_record(msg)
                    i += 1
                cursor[key] = i
                if i == len(wants):
                    open_.discard(key)
                    c.pause([TopicPartition(*key)])  # done: stop fetching it
                elif err is None and wants[i] - at > SEEK_GAP and sent[key] != wants[i]:
                    c.seek(TopicPartition(*key, wants[i]))
                    sent[key] = wants[i]
                    sought.add(key)
    finally:
        # A pause outlives the assignment in librdkafka: the next assign would not fetch.
        c.resume([TopicPartition(*k) for k in offsets if k not in open_])
        c.unassign()
    return found


def _consume_error(err: KafkaError, where: Partition) -> None:
    if err.fatal() or classify(err) is Disposition.FATAL:
        raise FeedbackError(f"reading {where[0]}[{where[1]}]: {err.name()}: {err.str()}")
    # Anything else (a leader moving, a broker briefly away) librdkafka retries itself;
    # the run's deadline bounds it.


def _text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if isinstance(err, KafkaError) else str(err)
