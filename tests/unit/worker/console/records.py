"""Records as the worker writes them (its own codec), read back as the console sees them."""

from __future__ import annotations

from typing import Any

import orjson

from worker import codec
from worker.console.views import Committed

ROUTE_TOPICS = {"r.escalate": "escalate", "r.auto": "auto_resolve", "r.more": "more_info"}
IN_TS = 1_700_000_000_000


def inbound(message_id: str, text: str, ts: int = IN_TS) -> codec.Record:
    value = orjson.dumps({"message_id": message_id, "text": text, "customer_id": "c-9"})
    return codec.Record("in", 3, 41, b"k", value, [("traceparent", b"00-1-01")], ts)


def predictions(action: str = "escalate_to_human") -> dict[str, Any]:
    def head(label: str, probs: dict[str, float]) -> dict[str, Any]:
        return {"label": label, "confidence": probs[label], "probabilities": probs}

    return {
        "intent": head("fraud_report", {"billing_issue": 0.2, "fraud_report": 0.7, "other": 0.1}),
        "urgency": head("high", {"low": 0.1, "medium": 0.2, "high": 0.7}),
        "sentiment": head("angry", {"calm": 0.05, "frustrated": 0.15, "angry": 0.8}),
        "action": head(
            action, {"auto_resolve": 0.1, "escalate_to_human": 0.8, "request_more_info": 0.1}
        ),
    }


def routed(
    message_id: str = "m-1",
    text: str = "someone stole my card",
    *,
    route: str = "escalate",
    reason: str = "model",
    topic: str = "r.escalate",
    preds: dict[str, Any] | None = None,
    out_ts: int = IN_TS + 40,
    read_ms: float = IN_TS + 55.5,
) -> Committed:
    rec = inbound(message_id, text)
    accepted = codec.decode(rec, 100_000)
    assert isinstance(accepted, codec.Accepted)
    ctx = codec.ResultContext(
        model={"name": "minilm", "version": "2026.11.26+abc", "content_hash": "h"},
        policy="action>=0.7",
        classified_at="2026-11-26T00:00:00.000+00:00",
        inference_ms=12.5,
        batch_size=3,
        batch_started_ms=IN_TS + 20,
    )
    action = {"escalate": "escalate_to_human", "more_info": "request_more_info"}.get(
        route, "auto_resolve"
    )
    value = codec.result_value(
        accepted,
        route,  # type: ignore[arg-type]
        action,  # type: ignore[arg-type]
        reason,  # type: ignore[arg-type]
        False,
        predictions(action) if preds is None else preds,
        ctx,
        unfamiliarity=1.5,
    )
    return Committed(topic, 0, 7, out_ts, value, [], read_ms)


def dead(value: bytes, max_text_chars: int = 10, read_ms: float = IN_TS + 30) -> Committed:
    rec = codec.Record("in", 1, 9, b"k", value, [("traceparent", b"00-2-01")], IN_TS)
    rejected = codec.decode(rec, max_text_chars)
    assert isinstance(rejected, codec.Rejected)
    return Committed("r.dlq", 0, 3, IN_TS + 20, value, codec.dead_letter_headers(rejected), read_ms)
