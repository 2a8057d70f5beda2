"""One item and its result to the record to produce: routed, or a dead letter."""

from __future__ import annotations

import orjson
import pytest

from worker import codec
from worker.inference import Failure, Skipped
from worker.intake import Item
from worker.model.protocol import Prediction
from worker.outgoing import dead_letter, step_down, to_outgoing
from worker.routing import RoutingPolicy
from worker.settings import WorkerSettings

LABELS = {
    "intent": "general_question",
    "urgency": "low",
    "sentiment": "calm",
    "action": "auto_resolve",
}
TOPICS = WorkerSettings().topics


def _ctx(policy: RoutingPolicy) -> codec.ResultContext:
    model = {"name": "m", "version": "1", "content_hash": "0" * 64}
    return codec.ResultContext(model, policy.name, "2026-01-01T00:00:00Z", 1.0, 1, 0.0)


def _item(value: bytes = b'{"message_id": "m", "text": "t"}', ids: list[int] | None = None) -> Item:
    rec = codec.Record("in", 0, 7, b"k", value, [("trace", b"1")], None)
    outcome = codec.decode(rec, 10_000)
    return Item(rec, outcome, [1] if ids is None else ids)


def test_an_unfamiliar_result_is_produced_to_the_fallback_topic() -> None:
    policy = RoutingPolicy(0.7, max_unfamiliarity=2.0)
    outs = {
        name: to_outgoing(
            _item(),
            Prediction(LABELS, dict.fromkeys(LABELS, 0.99), {}, score),
            _ctx(policy),
            policy,
            TOPICS,
        )
        for name, score in (("familiar", 1.5), ("unfamiliar", 7.0))
    }
    assert (outs["familiar"].topic, outs["familiar"].reason) == (TOPICS.auto_resolve, "model")
    unfamiliar = outs["unfamiliar"]
    assert (unfamiliar.topic, unfamiliar.route, unfamiliar.reason, unfamiliar.stage) == (
        TOPICS.more_info,
        "more_info",
        "unfamiliar",
        None,
    )
    value = orjson.loads(unfamiliar.value or b"")
    assert value["routing"]["reason"] == "unfamiliar" and value["routing"]["unfamiliarity"] == 7.0
    assert value["action"] == "request_more_info"


def test_a_message_too_deep_to_serialize_is_a_dead_letter_not_a_crash() -> None:
    """Issue 9, defect 1: orjson reads 1,024 levels but writes about 254."""
    value = b'{"message_id": "d", "text": "hi", "a": ' + b"[" * 300 + b"]" * 300 + b"}"
    item = _item(value)
    assert isinstance(item.outcome, codec.Accepted)  # it passes decode: the hazard is later
    policy = RoutingPolicy(0.7)
    row = Prediction(LABELS, dict.fromkeys(LABELS, 0.99), {}, None)
    out = to_outgoing(item, row, _ctx(policy), policy, TOPICS)
    assert (out.topic, out.stage, out.route, out.key, out.value) == (
        TOPICS.dlq,
        "serialize",
        None,
        b"k",
        value,
    )
    headers = dict(out.headers)
    assert headers["x-error-stage"] == b"serialize" and headers["trace"] == b"1"
    assert b"ecursion" in headers["x-error-message"]


def test_a_model_failure_is_a_dead_letter_of_stage_infer() -> None:
    policy = RoutingPolicy()
    out = to_outgoing(_item(), Failure(RuntimeError("boom")), _ctx(policy), policy, TOPICS)
    assert (out.topic, out.stage) == (TOPICS.dlq, "infer")
    assert dict(out.headers)["x-error-type"] == b"RuntimeError"


def test_blank_text_is_escalated_without_a_model_call() -> None:
    policy = RoutingPolicy()
    item = _item(b'{"message_id": "b", "text": "  "}', ids=[])
    out = to_outgoing(item, Skipped(), _ctx(policy), policy, TOPICS)
    assert (out.topic, out.route, out.reason) == (TOPICS.escalate, "escalate", "empty_text")


def test_a_message_sent_to_the_model_without_a_result_is_a_loud_error() -> None:
    """Never routed as empty text: the old code escalated a missing row as ``empty_text``."""
    policy = RoutingPolicy()
    with pytest.raises(RuntimeError, match="no model result"):
        to_outgoing(_item(ids=[1, 2]), Skipped(), _ctx(policy), policy, TOPICS)


def test_a_span_the_client_could_not_deliver_is_a_pointer_naming_its_offsets() -> None:
    record = codec.Record("in", 2, 41, None, None, [], None)  # stands at the span's last
    rejected = codec.Unreadable(record, "fetch", "_BAD_COMPRESSION", "cannot inflate", 37)
    out = dead_letter(rejected, "dlq")
    headers = dict(out.headers)
    assert (out.key, out.value, out.rung, out.stage) == (None, None, 2, "fetch")
    assert headers["x-source-offset"] == b"37" and headers["x-source-offset-last"] == b"41"
    assert headers["x-dead-letter-pointer"] == b"1"
    assert headers["x-error-type"] == b"_BAD_COMPRESSION"
    assert step_down(out) is None  # nothing smaller to fall back to
