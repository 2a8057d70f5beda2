"""Decode inbound records and encode results and dead letters. Pure: no Kafka, no torch.

A record becomes ``Accepted`` (a valid message) or ``Rejected`` (stage, type, reason);
a rejection goes to the dead-letter topic with the original key, value and headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas import messages as m
from schemas.labels import Action

Headers = list[tuple[str, bytes | None]]  # a None value is a Kafka null header value
MAX_ERROR_MESSAGE_CHARS = 1000
JSON_CONTENT_TYPE = b"application/json"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Record:
    """Where a Kafka record came from and what it held; the pipeline's unit of work."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers  # the readable ones: keys are valid UTF-8
    timestamp_ms: int | None
    header_error: str | None = None  # why a header was left out (a key not UTF-8)


@dataclass(frozen=True)
class Accepted:
    record: Record
    message: dict[str, Any]  # the JSON object as received (unknown fields included)
    message_id: str
    conversation_id: str | None
    text: str


@dataclass(frozen=True)
class Rejected:
    record: Record
    stage: m.DlqStage
    error_type: str
    reason: str


@dataclass(frozen=True)
class Unreadable(Rejected):
    """Offsets ``first_offset``..``record.offset`` that the Kafka client cannot deliver.

    ``record`` stands at the span's LAST offset, with no key, value or headers, so that
    committing it moves the partition past the whole span (worker.unreadable).
    """

    first_offset: int = 0


def parse(
    record: Record, model: type[M], max_bytes: int | None = None
) -> tuple[M, dict[str, Any]] | Rejected:
    """A record's value as ``model`` and the JSON object it was read from, or the reason
    it cannot be one: every untrusted value (inbound messages, agents' feedback) is judged
    by these same steps."""
    if record.header_error is not None:
        return Rejected(record, "decode", "InvalidHeader", record.header_error)
    if record.value is None:
        return Rejected(record, "decode", "EmptyValue", "record has no value (tombstone)")
    if max_bytes is not None and len(record.value) > max_bytes:
        why = f"value has {len(record.value)} bytes, limit {max_bytes}"
        return Rejected(record, "decode", "ValueTooLarge", why)
    try:
        obj = orjson.loads(record.value)  # rejects invalid UTF-8 and nesting beyond 1024
    except orjson.JSONDecodeError as exc:
        return Rejected(record, "decode", "JSONDecodeError", str(exc))
    if not isinstance(obj, dict):
        return Rejected(
            record, "validate", "NotAnObject", f"expected a JSON object, got {type(obj).__name__}"
        )
    try:
        return model.model_validate(obj), obj
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(value)"
        return Rejected(record, "validate", "ValidationError", f"{where}: {first['msg']}")


def decode(record: Record, max_text_chars: int) -> Accepted | Rejected:
    """bytes -> a validated inbound message, or the reason it cannot be one."""
    parsed = parse(record, m.InboundMessage)
    if isinstance(parsed, Rejected):
        return parsed
    msg, obj = parsed
    if len(msg.text) > max_text_chars:
        return Rejected(
            record,
            "validate",
            "TextTooLong",
            f"text has {len(msg.text)} chars, limit {max_text_chars}",
        )
    return Accepted(record, obj, msg.message_id, msg.conversation_id, msg.text)


def dead_letter_headers(rejected: Rejected) -> Headers:
    """The original headers, untouched, plus the reason and the source coordinates."""
    r = rejected.record
    first = rejected.first_offset if isinstance(rejected, Unreadable) else r.offset
    headers = [
        *r.headers,
        (m.HEADER_STAGE, rejected.stage.encode()),
        (m.HEADER_TYPE, rejected.error_type.encode()),
        (m.HEADER_MESSAGE, rejected.reason[:MAX_ERROR_MESSAGE_CHARS].encode("utf-8", "replace")),
        (m.HEADER_SOURCE_TOPIC, r.topic.encode()),
        (m.HEADER_SOURCE_PARTITION, str(r.partition).encode()),
        (m.HEADER_SOURCE_OFFSET, str(first).encode()),
    ]
    if isinstance(rejected, Unreadable):
        headers.append((m.HEADER_SOURCE_OFFSET_LAST, str(r.offset).encode()))
    return headers


def result_headers(record: Record, model_version: str) -> Headers:
    """Propagated headers (traceparent, ...) with content-type and model-version set."""
    ours = {m.HEADER_CONTENT_TYPE, m.HEADER_MODEL_VERSION}
    return [
        *((k, v) for k, v in record.headers if k not in ours),
        (m.HEADER_CONTENT_TYPE, JSON_CONTENT_TYPE),
        (m.HEADER_MODEL_VERSION, model_version.encode()),
    ]


@dataclass(frozen=True)
class ResultContext:
    """What is the same for every result of one batch."""

    model: Mapping[str, str]  # name, version, content_hash
    policy: str
    classified_at: str
    inference_ms: float
    batch_size: int
    batch_started_ms: float


def result_value(
    accepted: Accepted,
    route: m.Route,
    action: Action,
    reason: m.RouteReason,
    truncated: bool,
    predictions: Mapping[str, Any] | None,
    ctx: ResultContext,
    unfamiliarity: float | None = None,
) -> bytes:
    """The outbound JSON (schemas.messages.OutboundMessage) as bytes."""
    ts = accepted.record.timestamp_ms
    r = accepted.record
    return orjson.dumps(
        {
            "schema_version": m.SCHEMA_VERSION,
            "message_id": accepted.message_id,
            "conversation_id": accepted.conversation_id,
            "route": route,
            "action": action,
            "predictions": predictions,
            "routing": {
                "policy": ctx.policy,
                "reason": reason,
                "truncated": truncated,
                "unfamiliarity": unfamiliarity,
            },
            "model": ctx.model,
            "timing": {
                "kafka_timestamp_ms": ts,
                "classified_at": ctx.classified_at,
                "queue_ms": round(ctx.batch_started_ms - ts, 3) if ts is not None else None,
                "inference_ms": round(ctx.inference_ms, 3),
                "batch_size": ctx.batch_size,
            },
            "source": {"topic": r.topic, "partition": r.partition, "offset": r.offset},
            "message": accepted.message,
        }
    )
