"""Feedback records judged as untrusted input; routed results read for the index."""

from __future__ import annotations

import json

import pytest

from schemas import messages as m
from tests.unit.trainer.feedback.builders import feedback, result, review_item
from trainer.feedback import records
from trainer.feedback.join import Correction
from worker.codec import Record, Rejected
from worker.outgoing import dead_letter


def record(value: bytes | None, topic: str = "support.feedback", **kw: object) -> Record:
    fields: dict[str, object] = {
        "topic": topic,
        "partition": 2,
        "offset": 41,
        "key": b"k",
        "value": value,
        "headers": [("traceparent", b"00-1-01")],
        "timestamp_ms": 1,
    }
    fields.update(kw)
    return Record(**fields)  # type: ignore[arg-type]


def test_a_valid_feedback_is_a_correction_at_its_coordinates() -> None:
    got = records.decode_feedback(record(json.dumps(feedback("m1")).encode()))
    assert isinstance(got, Correction)
    assert (got.message_id, got.partition, got.offset) == ("m1", 2, 41)


def bad_label() -> bytes:
    value = feedback("m1")
    value["labels"] = {"intent": "world_domination"}
    return json.dumps(value).encode()


def no_labels() -> bytes:
    value = feedback("m1")
    value["labels"] = {}
    return json.dumps(value).encode()


def with_email_agent() -> bytes:
    return json.dumps(feedback("m1", agent="jane@example.com")).encode()


@pytest.mark.parametrize(
    ("value", "stage", "error_type"),
    [
        (b"not json", "decode", "JSONDecodeError"),
        (b"\xff\xfe{}", "decode", "JSONDecodeError"),  # not UTF-8
        (b"[1, 2]", "validate", "NotAnObject"),
        (bad_label(), "validate", "ValidationError"),
        (no_labels(), "validate", "ValidationError"),
        (with_email_agent(), "validate", "ValidationError"),
        (b'{"message_id": "m1"}', "validate", "ValidationError"),
        (b" " * (records.MAX_FEEDBACK_BYTES + 1), "decode", "ValueTooLarge"),
        (None, "decode", "EmptyValue"),
    ],
)
def test_an_invalid_record_is_rejected_with_its_stage(
    value: bytes | None, stage: str, error_type: str
) -> None:
    got = records.decode_feedback(record(value))
    assert isinstance(got, Rejected)
    assert (got.stage, got.error_type) == (stage, error_type)
    assert got.reason


def test_a_header_key_that_is_not_utf8_is_rejected() -> None:
    got = records.decode_feedback(
        record(json.dumps(feedback("m1")).encode(), header_error="header 0 key is not UTF-8")
    )
    assert isinstance(got, Rejected) and got.error_type == "InvalidHeader"


def test_a_rejection_becomes_the_workers_dead_letter() -> None:
    r = record(bad_label())
    got = records.decode_feedback(r)
    assert isinstance(got, Rejected)
    letter = dead_letter(got, "support.dlq")
    headers = dict(letter.headers)
    assert (letter.topic, letter.key, letter.value) == ("support.dlq", b"k", r.value)
    assert headers["traceparent"] == b"00-1-01"  # the original headers, untouched
    assert headers[m.HEADER_STAGE] == b"validate"
    assert headers[m.HEADER_TYPE] == b"ValidationError"
    assert b"labels.intent" in (headers[m.HEADER_MESSAGE] or b"")
    assert headers[m.HEADER_SOURCE_TOPIC] == b"support.feedback"
    assert (headers[m.HEADER_SOURCE_PARTITION], headers[m.HEADER_SOURCE_OFFSET]) == (b"2", b"41")


def test_index_entries_of_a_routed_result_and_a_review_item() -> None:
    routed = result("m1", classified_at="2025-03-01T11:00:00.5Z")
    direct = records.index_entry(record(json.dumps(routed).encode(), "esc"), "rev")
    wrapped = records.index_entry(record(json.dumps(review_item(routed)).encode(), "rev"), "rev")
    assert direct is not None and wrapped is not None
    assert (direct.message_id, direct.rank) == ("m1", records.RANK_ROUTE)
    assert (wrapped.message_id, wrapped.rank) == ("m1", records.RANK_REVIEW)
    assert direct.classified_us == wrapped.classified_us == 1_740_826_800_500_000
    assert direct.coordinates == ("esc", 2, 41)


@pytest.mark.parametrize("value", [b"garbage", b"[]", b'{"message_id": 5}', b"{}", None])
def test_a_routed_record_without_a_message_id_is_not_indexed(value: bytes | None) -> None:
    assert records.index_entry(record(value, "esc"), "rev") is None


def test_routed_result_validates_and_unwraps_a_review_item() -> None:
    routed = result("m1")
    got = records.routed_result(record(json.dumps(review_item(routed)).encode(), "rev"), "rev")
    assert got is not None and got.message_id == "m1"
    broken = {**routed, "route": "nowhere"}
    assert records.routed_result(record(json.dumps(broken).encode(), "esc"), "rev") is None
    assert records.routed_result(record(b"\xff", "esc"), "rev") is None
