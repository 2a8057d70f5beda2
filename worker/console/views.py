"""A committed record -> what the console's page shows. Pure: no Kafka, no web.

Every byte read back is untrusted (anyone with write access to a route topic or the DLQ
can put anything there), so a routed result is validated against ``OutboundMessage`` and
what fails is counted, not shown; header text is decoded with replacement and cut. The
page puts every string it gets into the DOM as text, never as markup.

Privacy: a view holds the message text and the raw value; ``without_text`` takes them
out, and the console applies it to live traffic unless started with ``--show-live-text``.
A review item's view (``review_item``) holds the text by design: the review page, behind
``--review``, is where agents read it to label it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import ValidationError

from schemas import messages as m
from schemas.learning import ReviewItem

MAX_HEADER_CHARS: Final = 500
MAX_RAW_CHARS: Final = 20_000  # the folded raw JSON of a result; a long text is cut
MAX_ID_CHARS: Final = 128  # InboundMessage.message_id's bound
LOW_CONFIDENCE: Final = frozenset({"low_confidence", "unfamiliar"})


@dataclass(frozen=True)
class SeenRecord:
    """A record the console read under read_committed, and when (epoch ms)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None  # the record's Kafka timestamp
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    read_ms: float


def routed(rec: SeenRecord, route_of_topic: Mapping[str, str]) -> dict[str, Any]:
    """The view of a result on a route topic; ``kind`` "unreadable" when it is no result."""
    try:
        out = m.OutboundMessage.model_validate_json(rec.value or b"")
    except ValidationError as exc:
        return _unreadable(rec, f"not a routed result: {exc.error_count()} schema errors")
    if route_of_topic.get(rec.topic) != out.route:
        return _unreadable(rec, f"route {out.route!r} on topic {rec.topic!r}")
    t = out.timing
    heads = _heads(out.predictions)
    text = out.message.get("text")
    view: dict[str, Any] = {
        "kind": "routed",
        "message_id": out.message_id,
        "topic": rec.topic,
        "route": out.route,
        "action": out.action,
        "reason": out.routing.reason,
        "low_confidence": out.routing.reason in LOW_CONFIDENCE,
        "policy": out.routing.policy,
        "truncated": out.routing.truncated,
        "unfamiliarity": out.routing.unfamiliarity,
        "heads": heads,
        "model": {"name": out.model.name, "version": out.model.version},
        "timing": {
            "inference_ms": t.inference_ms,
            "batch_size": t.batch_size,
            "queue_ms": t.queue_ms,
            # Kafka timestamp in -> the moment this console read the result committed.
            "end_to_end_ms": _since(t.kafka_timestamp_ms, rec.read_ms),
            # Kafka timestamp in -> the result record's own timestamp (when it was produced).
            "in_to_out_ms": _since(t.kafka_timestamp_ms, rec.timestamp_ms),
        },
        "at_ms": rec.timestamp_ms,
        "text": text[:MAX_RAW_CHARS] if isinstance(text, str) else None,
        "raw": _raw(rec.value),
    }
    return view


def review_item(item: ReviewItem, at_ms: int | None) -> dict[str, Any]:
    """What the review page shows of a queued result (read at ``at_ms``): the text, why it
    was queued, and the model's labels with every probability."""
    out = item.result
    text = out.message.get("text")
    return {
        "message_id": out.message_id,
        "reason": item.review.reason,
        "priority": item.review.priority,
        "weight": item.review.weight,
        "text": text[:MAX_RAW_CHARS] if isinstance(text, str) else None,
        "text_cut": isinstance(text, str) and len(text) > MAX_RAW_CHARS,
        "route": out.route,
        "action": out.action,
        "routing_reason": out.routing.reason,
        "heads": _heads(out.predictions),
        "model": {"name": out.model.name, "version": out.model.version},
        "at_ms": at_ms,
    }


def dead_letter(rec: SeenRecord) -> dict[str, Any]:
    """The view of a record on the DLQ: its stage and reason, from the worker's headers."""
    h = {k: _header(v) for k, v in rec.headers}
    message_id, text = _inbound_fields(rec.value)
    return {
        "kind": "dead_letter",
        "message_id": message_id,
        "stage": h.get(m.HEADER_STAGE),
        "error_type": h.get(m.HEADER_TYPE),
        "reason": h.get(m.HEADER_MESSAGE),
        "source": {
            "topic": h.get(m.HEADER_SOURCE_TOPIC),
            "partition": h.get(m.HEADER_SOURCE_PARTITION),
            "offset": h.get(m.HEADER_SOURCE_OFFSET),
        },
        "at_ms": rec.timestamp_ms,
        "text": text,
        "raw": _raw(rec.value),
    }


def without_text(view: dict[str, Any]) -> dict[str, Any]:
    """A view of live traffic for a console without ``--show-live-text``: no text, no raw
    value, and no dead-letter reason (it can quote the message, as the worker's log rule
    says: worker.runtime.logs.log_committed)."""
    hidden = {"text": None, "raw": None}
    if view["kind"] == "dead_letter":
        hidden["reason"] = None
    return {**view, **hidden, "text_hidden": True}


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """What a live list shows of a view: labels, not probabilities nor raw JSON."""
    keep = (
        "kind",
        "message_id",
        "route",
        "action",
        "reason",
        "stage",
        "error_type",
        "at_ms",
        "text",
        "text_hidden",
        "low_confidence",
    )
    out = {k: view[k] for k in keep if k in view}
    heads = view.get("heads")
    if heads:
        out["labels"] = {h: [p["label"], round(p["confidence"], 3)] for h, p in heads.items()}
    return out


def _heads(predictions: Mapping[str, m.HeadPrediction] | None) -> dict[str, Any] | None:
    """Per head: the label, its confidence, and every probability, largest first."""
    if predictions is None:
        return None
    return {
        head: {
            "label": p.label,
            "confidence": p.confidence,
            "probabilities": sorted(p.probabilities.items(), key=lambda kv: -kv[1]),
        }
        for head, p in predictions.items()
    }


def _unreadable(rec: SeenRecord, why: str) -> dict[str, Any]:
    return {"kind": "unreadable", "topic": rec.topic, "why": why, "at_ms": rec.timestamp_ms}


def _since(start_ms: int | None, end_ms: float | None) -> float | None:
    if start_ms is None or end_ms is None:
        return None
    return round(end_ms - start_ms, 1)


def _header(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[: MAX_HEADER_CHARS * 4].decode("utf-8", "replace")[:MAX_HEADER_CHARS]


def _inbound_fields(value: bytes | None) -> tuple[str | None, str | None]:
    """message_id and text of a dead letter's original value, when it has them."""
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    mid, text = obj.get("message_id"), obj.get("text")
    return (
        mid[:MAX_ID_CHARS] if isinstance(mid, str) else None,
        text[:MAX_RAW_CHARS] if isinstance(text, str) else None,
    )


def _raw(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace")
    if len(text) > MAX_RAW_CHARS:
        return text[:MAX_RAW_CHARS] + f"... ({len(text) - MAX_RAW_CHARS} more chars)"
    return text
