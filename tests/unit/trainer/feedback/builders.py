"""Feedback values and routed results as the wire carries them, for the collector's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.labels import HEADS
from schemas.learning import Feedback
from schemas.messages import OutboundMessage
from trainer.feedback.join import Correction

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def feedback(
    message_id: str,
    *,
    minutes: float = 0,
    agent: str = "agent-1",
    review_reason: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    """A valid Feedback value (JSON-ready); ``labels`` default to intent=billing_issue."""
    return {
        "schema_version": 1,
        "message_id": message_id,
        "labels": labels or {"intent": "billing_issue"},
        "agent_id": agent,
        "model_version": "fb-version",
        "at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "review_reason": review_reason,
    }


def correction(message_id: str, partition: int = 0, offset: int = 0, **kw: Any) -> Correction:
    return Correction(Feedback.model_validate(feedback(message_id, **kw)), partition, offset)


def result(
    message_id: str,
    *,
    text: str = "my card was declined at the store",
    customer_id: str | None = "cust-1",
    version: str = "2025.03.01-1",
    classified_at: str = "2025-03-01T11:00:00.000000Z",
    predicted: bool = True,
) -> dict[str, Any]:
    """A routed result (schemas.messages.OutboundMessage), validated before it is returned."""
    message: dict[str, Any] = {"message_id": message_id, "text": text}
    if customer_id is not None:
        message["customer_id"] = customer_id
    predictions = {
        head: {"label": labels[0], "confidence": 0.9, "probabilities": {labels[0]: 0.9}}
        for head, labels in HEADS.items()
    }
    value = {
        "schema_version": 1,
        "message_id": message_id,
        "conversation_id": None,
        "route": "escalate",
        "action": "escalate_to_human",
        "predictions": predictions if predicted else None,
        "routing": {
            "policy": "action>=0.7",
            "reason": "model" if predicted else "empty_text",
            "truncated": False,
            "unfamiliarity": 0.1 if predicted else None,
        },
        "model": {"name": "support-router", "version": version, "content_hash": "abc"},
        "timing": {
            "kafka_timestamp_ms": 1,
            "classified_at": classified_at,
            "queue_ms": 1.0,
            "inference_ms": 2.0,
            "batch_size": 1,
        },
        "source": {"topic": "support.inbound", "partition": 0, "offset": 0},
        "message": message,
    }
    OutboundMessage.model_validate(value)
    return value


def review_item(routed: dict[str, Any], reason: str = "low_confidence") -> dict[str, Any]:
    """A review-queue entry (schemas.learning.ReviewItem) wrapping ``routed``."""
    return {
        "schema_version": 1,
        "review": {"reason": reason, "priority": 0.5, "weight": 1.0, "signature": "00ff"},
        "result": routed,
    }
