from __future__ import annotations

import json

import orjson

from tests.unit.worker.console.records import IN_TS, ROUTE_TOPICS, dead, routed
from worker.console import views
from worker.console.views import SeenRecord


def test_a_routed_result_is_shown_as_the_worker_wrote_it() -> None:
    v = views.routed(routed(), ROUTE_TOPICS)
    assert v["kind"] == "routed"
    assert (v["message_id"], v["route"], v["action"], v["reason"]) == (
        "m-1",
        "escalate",
        "escalate_to_human",
        "model",
    )
    assert v["heads"]["intent"]["label"] == "fraud_report"
    assert v["heads"]["intent"]["confidence"] == 0.7
    # every probability, largest first
    assert v["heads"]["intent"]["probabilities"] == [
        ("fraud_report", 0.7),
        ("billing_issue", 0.2),
        ("other", 0.1),
    ]
    assert v["model"] == {"name": "minilm", "version": "2026.11.26+abc"}
    assert v["timing"] == {
        "inference_ms": 12.5,
        "batch_size": 3,
        "queue_ms": 20.0,
        "end_to_end_ms": 55.5,  # in -> read committed
        "in_to_out_ms": 40,  # in -> the result record's timestamp
    }
    assert v["text"] == "someone stole my card"
    assert json.loads(v["raw"])["message"]["customer_id"] == "c-9"
    assert v["low_confidence"] is False


def test_fallback_reasons_count_as_low_confidence() -> None:
    for reason, low in (
        ("low_confidence", True),
        ("unfamiliar", True),
        ("rule:urgency_high", False),
    ):
        assert views.routed(routed(reason=reason), ROUTE_TOPICS)["low_confidence"] is low


def test_empty_text_has_no_heads() -> None:
    v = views.routed(routed(text="", reason="empty_text", preds={}), ROUTE_TOPICS)
    assert v["kind"] == "routed"
    assert v["heads"] == {}
    rec = routed(text="  ", reason="empty_text")
    value = orjson.loads(rec.value or b"")
    value["predictions"] = None
    none = SeenRecord(**{**rec.__dict__, "value": orjson.dumps(value)})
    assert views.routed(none, ROUTE_TOPICS)["heads"] is None


def test_what_is_not_a_result_is_unreadable_not_shown() -> None:
    good = routed()
    for value in (b"", b"not json", b"[1]", b'{"message_id": "x"}', None):
        bad = SeenRecord(**{**good.__dict__, "value": value})
        v = views.routed(bad, ROUTE_TOPICS)
        assert v["kind"] == "unreadable"
        assert "message_id" not in v
    # a valid result on another route's topic is not believed either
    moved = views.routed(routed(topic="r.auto"), ROUTE_TOPICS)
    assert moved["kind"] == "unreadable"
    assert "escalate" in moved["why"]


def test_a_dead_letter_shows_the_worker_s_stage_and_reason() -> None:
    v = views.dead_letter(dead(b'{"message_id": "m-9", "text": "far too long a text"}'))
    assert (v["kind"], v["message_id"], v["stage"], v["error_type"]) == (
        "dead_letter",
        "m-9",
        "validate",
        "TextTooLong",
    )
    assert v["reason"] == "text has 19 chars, limit 10"
    assert v["source"] == {"topic": "in", "partition": "1", "offset": "9"}
    assert v["text"] == "far too long a text"


def test_a_dead_letter_of_any_bytes_is_shown_without_an_id() -> None:
    for value in (b"\xff\xfe", b"[]", b'{"message_id": 7}', b"{" * 5000):
        v = views.dead_letter(dead(value))
        assert v["kind"] == "dead_letter"
        assert v["message_id"] is None
        assert v["stage"] in ("decode", "validate")
    long_id = dead(orjson.dumps({"message_id": "i" * 5000, "text": "t" * 50}))
    assert len(views.dead_letter(long_id)["message_id"]) == views.MAX_ID_CHARS


def test_header_text_is_decoded_with_replacement_and_cut() -> None:
    rec = dead(b"not json")
    headers = [*rec.headers, ("x-error-message", b"\xff" + b"y" * 5000)]
    v = views.dead_letter(SeenRecord(**{**rec.__dict__, "headers": headers}))
    assert v["reason"].startswith("\ufffd")
    assert len(v["reason"]) == views.MAX_HEADER_CHARS


def test_without_text_takes_out_text_raw_and_a_dead_letter_s_reason() -> None:
    r = views.without_text(views.routed(routed(), ROUTE_TOPICS))
    assert (r["text"], r["raw"], r["text_hidden"]) == (None, None, True)
    assert r["reason"] == "model"  # a routing reason is no text of the customer's
    assert "someone stole" not in json.dumps(r)
    d = views.without_text(views.dead_letter(dead(b'{"message_id": "m", "text": "secret!!!!!"}')))
    assert (d["text"], d["raw"], d["reason"]) == (None, None, None)
    assert "secret" not in json.dumps(d)


def test_a_summary_keeps_labels_not_probabilities() -> None:
    s = views.summary(views.routed(routed(), ROUTE_TOPICS))
    assert s["labels"]["urgency"] == ["high", 0.7]
    assert "heads" not in s and "raw" not in s
    assert s["at_ms"] == IN_TS + 40


def test_a_long_raw_value_is_cut() -> None:
    v = views.routed(routed(text="w" * 50_000), ROUTE_TOPICS)
    assert len(v["raw"]) < views.MAX_RAW_CHARS + 100
    assert v["raw"].endswith("more chars)")
