"""Kafka records in, corrections and routed-result coordinates out. Pure: no Kafka.

Feedback is untrusted: a record that is too large, not UTF-8 JSON, or not a ``Feedback``
becomes a ``worker.codec.Rejected`` (stage decode or validate), dead-lettered in the
worker's format. Routed results are our own output: the index reads only their
message_id and classification time, and the full result is validated once, when a
correction needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError

from schemas.learning import Feedback, ReviewItem
from schemas.messages import OutboundMessage
from trainer.feedback.join import Correction, micros
from worker.codec import Record, Rejected, parse

# A valid Feedback is well under 4 KiB (ids of 128 chars, a reason of 500); parsing more
# than this is work for an attacker, not for an agent.
MAX_FEEDBACK_BYTES: Final = 16 * 1024
# Which copy of a routed result the index prefers when both exist: the route topic's
# (the one the desk acted on) over the review queue's (the same result, wrapped).
RANK_ROUTE: Final = 1
RANK_REVIEW: Final = 0


def decode_feedback(record: Record) -> Correction | Rejected:
    """bytes -> a valid correction, or the reason it cannot be one."""
    parsed = parse(record, Feedback, MAX_FEEDBACK_BYTES)
    if isinstance(parsed, Rejected):
        return parsed
    feedback = parsed[0]
    return Correction(feedback, record.partition, record.offset)


@dataclass(frozen=True)
class IndexEntry:
    """Where a routed result of one message lies, and how much the index prefers it."""

    message_id: str
    topic: str
    partition: int
    offset: int
    classified_us: int  # later routing first (0 when the time cannot be read)
    rank: int  # RANK_ROUTE or RANK_REVIEW, on equal time

    @property
    def coordinates(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def index_entry(record: Record, review_topic: str) -> IndexEntry | None:
    """The index entry of a routed result or review item; None when it has no message_id."""
    try:
        obj = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return None
    review = record.topic == review_topic
    result = obj.get("result") if review and isinstance(obj, dict) else obj
    if not isinstance(result, dict):
        return None
    message_id = result.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        return None
    return IndexEntry(
        message_id,
        record.topic,
        record.partition,
        record.offset,
        _classified_us(result.get("timing")),
        RANK_REVIEW if review else RANK_ROUTE,
    )


def _classified_us(timing: Any) -> int:
    value = timing.get("classified_at") if isinstance(timing, dict) else None
    if not isinstance(value, str):
        return 0
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return 0
    return micros(at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def routed_result(record: Record, review_topic: str) -> OutboundMessage | None:
    """The validated routed result a record holds (a review item's, unwrapped), or None."""
    try:
        if record.topic == review_topic:
            return ReviewItem.model_validate_json(record.value or b"").result
        return OutboundMessage.model_validate_json(record.value or b"")
    except ValidationError:
        return None
