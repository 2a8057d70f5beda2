from __future__ import annotations

import orjson

from schemas.learning import ShadowResult
from worker.inference import SKIPPED, ItemResult
from worker.model.protocol import Prediction
from worker.outgoing import Outgoing
from worker.routing import RoutingPolicy
from worker.shadow import agreement, wrap

SERVING = {"name": "serving", "version": "1", "content_hash": "a" * 64}


def prediction(action: str, intent: str, confidence: float = 0.9) -> Prediction:
    labels = {"action": action, "intent": intent}
    return Prediction(labels, {"action": confidence, "intent": confidence}, {}, 0.1)


def result_value(route: str, action: str) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "message_id": "m",
            "conversation_id": None,
            "route": route,
            "action": action,
            "predictions": None,
            "routing": {"policy": "p", "reason": "model", "truncated": False},
            "model": {"name": "candidate", "version": "2", "content_hash": "b" * 64},
            "timing": {
                "kafka_timestamp_ms": None,
                "classified_at": "t",
                "queue_ms": None,
                "inference_ms": 1.0,
                "batch_size": 2,
            },
            "source": {"topic": "in", "partition": 0, "offset": 1},
            "message": {"message_id": "m", "text": "hi"},
        }
    )


def test_agreement_is_per_head_and_route() -> None:
    a = prediction("auto_resolve", "billing_issue")
    b = prediction("escalate_to_human", "billing_issue")
    assert agreement(a, b, "auto_resolve", "escalate") == {
        "action": False,
        "intent": True,
        "route": False,
    }


def test_every_record_goes_to_the_shadow_topic_results_wrapped_with_the_serving_view() -> None:
    outgoing = [
        Outgoing(
            "support.auto_resolve",
            b"k",
            result_value("auto_resolve", "auto_resolve"),
            [],
            "auto_resolve",
            "model",
        ),
        Outgoing("support.dlq", b"k", b"bad", [("x-error-stage", b"decode")], stage="decode"),
        Outgoing(
            "support.escalate",
            b"k",
            result_value("escalate", "escalate_to_human"),
            [],
            "escalate",
            "empty_text",
        ),
    ]
    mine: list[ItemResult] = [prediction("auto_resolve", "billing_issue"), SKIPPED, SKIPPED]
    theirs: list[ItemResult] = [prediction("escalate_to_human", "billing_issue"), SKIPPED, SKIPPED]
    out, agreements = wrap(outgoing, mine, theirs, RoutingPolicy(0.7), SERVING, "support.shadow")
    assert {o.topic for o in out} == {"support.shadow"}
    assert out[1].value == b"bad" and out[1].stage == "decode"
    first = ShadowResult.model_validate_json(out[0].value or b"")
    assert first.serving.route == "escalate" and first.serving.labels["intent"] == "billing_issue"
    assert first.agree == {"action": False, "intent": True, "route": False}
    assert first.result.model.version == "2"
    blank = ShadowResult.model_validate_json(out[2].value or b"")
    assert blank.agree == {"route": True}
    assert agreements == [first.agree]  # blank texts are not compared
