"""Records as the worker writes them (its own codec), read back as the console sees them."""

from __future__ import annotations

from typing import Any

import orjson

from worker import codec
from worker.console.views import SeenRecord

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
) -> SeenRecord:
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
    return SeenRecord(topic, 0, 7, out_ts, value, [], read_ms)


def dead(value: bytes, max_text_chars: int = 10, read_ms: float = IN_TS + 30) -> SeenRecord:
    rec = codec.Record("in", 1, 9, b"k", value, [("traceparent", b"00-2-01")], IN_TS)
    rejected = codec.decode(rec, max_text_chars)
    assert isinstance(rejected, codec.Rejected)
    return SeenRecord(
        "r.dlq", 0, 3, IN_TS + 20, value, codec.dead_letter_headers(rejected), read_ms
    )


MODEL_VERSION = "2026.11.26+abc"  # routed()'s


def labelled(
    intent: str = "billing_issue",
    urgency: str = "high",
    sentiment: str = "angry",
    action: str = "escalate_to_human",
    confidence: float = 0.6,
) -> dict[str, Any]:
    """Predictions of the real label sets (schemas.labels.HEADS) whose top labels are these."""
    from schemas.labels import HEADS

    chosen = {"intent": intent, "urgency": urgency, "sentiment": sentiment, "action": action}
    out = {}
    for head, label in chosen.items():
        rest = (1 - confidence) / (len(HEADS[head]) - 1)
        probs = {lab: confidence if lab == label else rest for lab in HEADS[head]}
        out[head] = {"label": label, "confidence": confidence, "probabilities": probs}
    return out


def review_value(
    message_id: str = "m-1",
    text: str = "someone stole my card",
    *,
    reason: str = "low_confidence",
    priority: float = 0.5,
    weight: float = 1.0,
    preds: dict[str, Any] | None = None,
) -> bytes:
    """A ``ReviewItem`` as the worker's sampling policy writes it: a routed result
    (this module's ``routed``, with ``labelled()`` predictions unless told) and why it
    was queued."""
    preds = labelled() if preds is None else preds
    result = orjson.loads(routed(message_id, text, preds=preds).value or b"")
    review = {"reason": reason, "priority": priority, "weight": weight, "signature": "0f3c"}
    return orjson.dumps({"schema_version": 1, "review": review, "result": result})


def feedback_value(
    message_id: str = "m-1",
    labels: dict[str, str] | None = None,
    *,
    at: str = "2026-11-26T10:15:00+00:00",
    agent_id: str = "a-0123456789abcdef0123",
    model_version: str = MODEL_VERSION,
) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "message_id": message_id,
            "labels": labels or {"intent": "refund_request"},
            "agent_id": agent_id,
            "model_version": model_version,
            "at": at,
        }
    )


def shadow_value(
    message_id: str = "m-1",
    agree: dict[str, bool] | None = None,
    *,
    candidate: str = "2026.12.01+new",
    serving: str = MODEL_VERSION,
) -> bytes:
    """A ``ShadowResult``: the candidate's result (``routed`` under another version) and
    the serving model's labels."""
    result = orjson.loads(routed(message_id).value or b"")
    result["model"] = {"name": "minilm", "version": candidate, "content_hash": "h2"}
    agree = agree if agree is not None else dict.fromkeys((*result["predictions"], "route"), True)
    return orjson.dumps(
        {
            "schema_version": 1,
            "result": result,
            "serving": {
                "model": {"name": "minilm", "version": serving, "content_hash": "h"},
                "route": "escalate",
                "labels": {h: p["label"] for h, p in result["predictions"].items()},
            },
            "agree": agree,
        }
    )


def on_topic(topic: str, value: bytes, ts: int = IN_TS, offset: int = 0) -> SeenRecord:
    return SeenRecord(topic, 0, offset, ts, value, [], ts + 5.0)
