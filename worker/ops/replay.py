"""Which dead letters ``support-worker dlq replay`` re-publishes, and as what. Pure: no Kafka.

A dead letter (``worker.outgoing.dead_letter``) holds the original key and value, the
original headers, and our ``x-`` headers (stage, error type, source coordinates). Replaying
it means producing the original key, value and non-``x-`` headers to the inbound topic
again, with ``x-replay-of: <dlq topic>/<partition>/<offset>`` naming the letter.

``decide`` sorts one DLQ record: not selected by the filters, selected but not replayable
(a pointer or a truncated dead letter holds no full original; a record whose headers
cannot be read, or without ``x-error-stage``, is not one of ours), or to replay. Every
filter given must match; the values of one filter are alternatives.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson

from schemas import messages as m
from worker import codec
from worker.outgoing import HEADER_POINTER, HEADER_TRUNCATED

Verdict = Literal["replay", "unreplayable", "not_selected"]
MAX_MESSAGE_ID_CHARS = 128
_RANGE = re.compile(r"([0-9]+)(?::([0-9]*)-([0-9]*))?")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class OffsetRange:
    """Offsets ``first``..``last`` (both inclusive; None: unbounded) of one DLQ partition."""

    partition: int
    first: int | None = None
    last: int | None = None

    def holds(self, partition: int, offset: int) -> bool:
        return (
            partition == self.partition
            and (self.first is None or offset >= self.first)
            and (self.last is None or offset <= self.last)
        )


def parse_offsets(text: str) -> OffsetRange:
    """``P`` (a whole partition), ``P:FIRST-LAST``, ``P:FIRST-`` or ``P:-LAST``."""
    match = _RANGE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r}: expected P, P:FIRST-LAST, P:FIRST- or P:-LAST")
    partition, first, last = match.groups()
    out = OffsetRange(int(partition), int(first) if first else None, int(last) if last else None)
    if out.first is not None and out.last is not None and out.first > out.last:
        raise ValueError(f"{text!r}: the first offset is after the last")
    return out


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from RFC 3339 (an offset or Z required) or from digits."""
    text = text.strip()
    if _DIGITS.fullmatch(text):
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: expected RFC 3339 (2026-11-26T10:00:00Z) or ms") from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r}: give a UTC offset (Z or +01:00)")
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class Selection:
    """The filters of one replay; empty ones select everything."""

    stages: frozenset[str] = frozenset()
    error_types: frozenset[str] = frozenset()
    since_ms: int | None = None  # dead-lettered at or after (the DLQ record's timestamp)
    until_ms: int | None = None  # ... and before
    offsets: tuple[OffsetRange, ...] = ()

    def partitions(self, existing: Iterable[int]) -> list[int]:
        """The DLQ partitions to read: those the offset filter names, else all."""
        named = {r.partition for r in self.offsets}
        return sorted(p for p in existing if not named or p in named)

    def end(self, partition: int, high_watermark: int) -> int:
        """Where reading this partition stops: its end at start, or past the last range."""
        ranges = [r for r in self.offsets if r.partition == partition]
        if not ranges or any(r.last is None for r in ranges):
            return high_watermark
        return min(high_watermark, max(r.last for r in ranges if r.last is not None) + 1)

    def matches(self, letter: DeadLetter) -> bool:
        r = letter.record
        ts = r.timestamp_ms
        return (
            (not self.stages or letter.stage in self.stages)
            and (not self.error_types or letter.error_type in self.error_types)
            and (self.since_ms is None or (ts is not None and ts >= self.since_ms))
            and (self.until_ms is None or (ts is not None and ts < self.until_ms))
            and (not self.offsets or any(o.holds(r.partition, r.offset) for o in self.offsets))
        )


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ record and what our headers say about it (None: header absent)."""

    record: codec.Record
    stage: str | None
    error_type: str | None
    source: str | None  # "<topic>/<partition>/<offset>" of the original
    source_partition: int | None
    pointer: bool
    truncated: str | None  # the original value's length, for a truncated copy
    message_id: str | None  # from the value, when it is a JSON object with a string id


def read_dead_letter(record: codec.Record) -> DeadLetter:
    """Our headers from a DLQ record whose bytes are untrusted: nothing here raises.

    A header repeated takes its last value: ours come after the original headers.
    """
    last = dict(record.headers)
    text = {k: v.decode("utf-8", "replace") for k, v in last.items() if v is not None}
    topic, partition, offset = (
        text.get(h)
        for h in (m.HEADER_SOURCE_TOPIC, m.HEADER_SOURCE_PARTITION, m.HEADER_SOURCE_OFFSET)
    )
    source = f"{topic}/{partition}/{offset}" if topic and partition and offset else None
    last_offset = text.get(m.HEADER_SOURCE_OFFSET_LAST)  # a span the client could not read
    if source and last_offset:
        source += f"-{last_offset}"
    return DeadLetter(
        record=record,
        stage=text.get(m.HEADER_STAGE),
        error_type=text.get(m.HEADER_TYPE),
        source=source,
        source_partition=int(partition) if partition and _DIGITS.fullmatch(partition) else None,
        pointer=HEADER_POINTER in last,
        truncated=text.get(HEADER_TRUNCATED, "?") if HEADER_TRUNCATED in last else None,
        message_id=_message_id(record.value),
    )


def _message_id(value: bytes | None) -> str | None:
    if not value:
        return None
    obj = None
    with contextlib.suppress(orjson.JSONDecodeError):
        obj = orjson.loads(value)
    mid = obj.get("message_id") if isinstance(obj, dict) else None
    return mid[:MAX_MESSAGE_ID_CHARS] if isinstance(mid, str) else None


@dataclass(frozen=True)
class ReplayDecision:
    verdict: Verdict
    letter: DeadLetter
    why: str = ""  # for unreplayable: the reason, for the report


def decide(record: codec.Record, selection: Selection) -> ReplayDecision:
    letter = read_dead_letter(record)
    if not selection.matches(letter):
        return ReplayDecision("not_selected", letter)
    why = _unreplayable(letter)
    return ReplayDecision("unreplayable", letter, why) if why else ReplayDecision("replay", letter)


def _unreplayable(letter: DeadLetter) -> str:
    if letter.record.header_error is not None:
        return f"unreadable headers ({letter.record.header_error})"
    if letter.stage is None:
        return f"not a dead letter: no {m.HEADER_STAGE} header"
    if letter.pointer:
        where = letter.source or "(no x-source-* headers)"
        return f"pointer dead letter, no value here; the original was at {where}"
    if letter.truncated is not None:
        return f"truncated dead letter (original {letter.truncated} bytes)"
    return ""


def replay_of(record: codec.Record) -> bytes:
    return f"{record.topic}/{record.partition}/{record.offset}".encode()


@dataclass(frozen=True)
class Replay:
    """The record to produce to inbound."""

    topic: str
    partition: int | None  # None: the producer's partitioner (by key)
    key: bytes | None
    value: bytes | None
    headers: codec.Headers


def to_replay(letter: DeadLetter, inbound: str, inbound_partitions: int) -> Replay:
    """The original key, value and non-``x-`` headers, plus ``x-replay-of``.

    It goes back to the partition it was read from when that is an inbound partition
    (the key's partition as the original producer chose it), else by key.
    """
    r = letter.record
    headers: codec.Headers = [(k, v) for k, v in r.headers if not k.startswith("x-")]
    headers.append((m.HEADER_REPLAY_OF, replay_of(r)))
    came_from = letter.source.rsplit("/", 2)[0] if letter.source else None
    p = letter.source_partition
    same = came_from == inbound and p is not None and p < inbound_partitions
    return Replay(inbound, p if same else None, r.key, r.value, headers)


def describe(d: ReplayDecision) -> str:
    """One line for the listing: what, where, why."""
    r, letter = d.letter.record, d.letter
    when = "-" if r.timestamp_ms is None else _utc(r.timestamp_ms)
    fields: Mapping[str, object] = {
        "partition": r.partition,
        "offset": r.offset,
        "stage": letter.stage or "-",
        "error_type": letter.error_type or "-",
        "timestamp": when,
        "message_id": letter.message_id or "-",
    }
    line = " ".join(f"{k}={_quoted(v)}" for k, v in fields.items())
    return f"{line} why={_quoted(d.why)}" if d.why else line


def _utc(ms: int) -> str:
    try:
        when = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, ValueError, OSError):  # a timestamp no datetime holds
        return str(ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quoted(value: object) -> str:
    text = str(value)
    return text if text and text.isprintable() and " " not in text else repr(text)
