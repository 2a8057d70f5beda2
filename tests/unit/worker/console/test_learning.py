from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from tests.unit.worker.console.records import (
    IN_TS,
    MODEL_VERSION,
    feedback_value,
    labelled,
    on_topic,
    review_value,
    shadow_value,
)
from worker import codec
from worker.console.learning import Learning, errors_text, feedback_for
from worker.review import Pick
from worker.review import review_value as worker_review_value
from worker.settings import TopicNames

TOPICS = TopicNames(review="t.review", feedback="t.feedback", shadow="t.shadow")
AT = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)


def test_queued_items_show_their_text_reason_and_the_model_s_labels() -> None:
    learning = Learning(TOPICS, review=True)
    learning.on_records(
        [
            on_topic("t.review", review_value("m1", "my refund?", priority=0.3)),
            on_topic("t.review", review_value("m2", "LOCKED OUT", reason="unfamiliar", priority=1)),
        ]
    )
    first, second = learning.queue.top(10)
    assert (first.message_id, first.reason, first.model_version) == (
        "m2",
        "unfamiliar",
        MODEL_VERSION,
    )
    view = first.view
    assert (view["text"], view["reason"], view["priority"], view["at_ms"]) == (
        "LOCKED OUT",
        "unfamiliar",
        1.0,
        IN_TS,
    )
    assert view["heads"]["intent"]["label"] == "billing_issue"
    assert view["heads"]["intent"]["confidence"] == 0.6
    assert view["model"] == {"name": "minilm", "version": MODEL_VERSION}
    assert second.view["text"] == "my refund?"
    assert learning.read == {"t.shadow": 0, "t.review": 2, "t.feedback": 0}


def test_a_correction_on_the_topic_answers_the_item_and_counts_agreement() -> None:
    learning = Learning(TOPICS, review=True)
    learning.on_records(
        [on_topic("t.review", review_value("m1")), on_topic("t.review", review_value("m2"))]
    )
    fb = feedback_value("m1", {"intent": "billing_issue", "urgency": "low"})
    learning.on_records([on_topic("t.feedback", fb)])
    assert [i.message_id for i in learning.queue.top(10)] == ["m2"]
    [version] = learning.agreement.report()["versions"]
    assert version["version"] == MODEL_VERSION
    assert version["heads"]["intent"]["agree"] == 1
    assert version["heads"]["urgency"]["agree"] == 0


def test_a_record_that_breaks_its_contract_is_counted_and_left_out() -> None:
    learning = Learning(TOPICS, review=True)
    bad_feedback = orjson.loads(feedback_value())
    bad_feedback["agent_id"] = "ana@example.com"  # a name, not a pseudonym
    learning.on_records(
        [
            on_topic("t.review", b"not json"),
            on_topic("t.review", orjson.dumps({"schema_version": 1})),
            on_topic("t.feedback", orjson.dumps(bad_feedback)),
            on_topic("t.shadow", b"{}"),
            on_topic("t.review", review_value("m1")),
        ]
    )
    assert learning.unreadable == {"t.shadow": 1, "t.review": 2, "t.feedback": 1}
    assert len(learning.queue) == 1


def test_without_review_the_console_reads_only_the_shadow_topic() -> None:
    learning = Learning(TOPICS, review=False)
    assert learning.topics() == ["t.shadow"]
    learning.on_records([on_topic("t.review", review_value("m1"))])
    assert len(learning.queue) == 0
    assert Learning(TOPICS, review=True).topics() == ["t.shadow", "t.review", "t.feedback"]


def test_shadow_results_are_counted_per_candidate() -> None:
    learning = Learning(TOPICS, review=False)
    learning.on_records(
        [
            on_topic("t.shadow", shadow_value("m1")),
            on_topic("t.shadow", shadow_value("m2", {"intent": False, "route": True})),
        ]
    )
    [c] = learning.shadow.report()["candidates"]
    assert (c["version"], c["n"], c["serving"]) == ("2026.12.01+new", 2, {MODEL_VERSION: 2})
    assert c["agree"]["intent"] == {"agree": 1, "n": 2, "rate": 0.5}
    assert c["agree"]["action"]["n"] == 1


def queued() -> Learning:
    learning = Learning(TOPICS, review=True)
    learning.on_records(
        [on_topic("t.review", review_value("m1", reason="random", preds=labelled()))]
    )
    return learning


def test_a_correction_takes_the_message_and_version_from_the_queued_item() -> None:
    item = queued().queue.get("m1")
    assert item is not None
    body = {
        "labels": {"intent": "refund_request", "urgency": "high"},
        "reason": "  customer asked twice ",
        "message_id": "forged",
        "model_version": "forged",
        "agent_id": "forged",
        "review_reason": "unfamiliar",
        "at": "2000-01-01T00:00:00Z",
    }
    fb = feedback_for(item, body, "a-0123", AT)
    assert (fb.message_id, fb.model_version, fb.agent_id, fb.at) == (
        "m1",
        MODEL_VERSION,
        "a-0123",
        AT,
    )
    assert fb.review_reason == "random"
    assert fb.reason == "customer asked twice"
    assert fb.labels.given() == {"intent": "refund_request", "urgency": "high"}
    assert feedback_for(item, {**body, "reason": "   "}, "a-1", AT).reason is None


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        (None, "labels"),
        ({}, "correct at least one"),
        ({"intent": "fraud_report"}, "labels.intent"),
        ({"mood": "calm"}, "labels.mood"),
        ({"intent": 3}, "labels.intent"),
    ],
)
def test_an_invalid_correction_says_where(labels: object, says: str) -> None:
    item = queued().queue.get("m1")
    assert item is not None
    with pytest.raises(ValidationError) as exc:
        feedback_for(item, {"labels": labels}, "a-1", AT)
    assert says in errors_text(exc.value)


def test_a_long_reason_is_refused() -> None:
    item = queued().queue.get("m1")
    assert item is not None
    with pytest.raises(ValidationError) as exc:
        feedback_for(item, {"labels": {"intent": "refund_request"}, "reason": "x" * 501}, "a", AT)
    assert errors_text(exc.value).startswith("reason:")


def test_what_the_worker_writes_is_what_the_console_reads() -> None:
    """The worker's own builders (worker.review, a dead letter in shadow), not this
    package's copies of the contracts."""
    learning = Learning(TOPICS, review=True)
    pick = Pick(0, "low_confidence", 0.8123456789, 1.0, 0xBEEF)
    routed = orjson.loads(review_value("m1"))["result"]
    value = worker_review_value(pick, orjson.dumps(routed))
    rejected = codec.decode(codec.Record("in", 0, 1, b"k", b"not json", [], IN_TS), 100)
    assert isinstance(rejected, codec.Rejected)
    dead = replace(on_topic("t.shadow", b"not json"), headers=codec.dead_letter_headers(rejected))
    learning.on_records([on_topic("t.review", value), dead])
    item = learning.queue.get("m1")
    assert item is not None
    assert (item.reason, item.priority) == ("low_confidence", 0.812346)
    assert learning.dead_letters["t.shadow"] == 1
    assert learning.unreadable["t.shadow"] == 0
