"""Decoding every kind of bad input, and the dead-letter and result headers."""

from __future__ import annotations

import json

import orjson
import pytest

from schemas.messages import OutboundMessage
from worker import codec


def _record(value: bytes | None, headers: codec.Headers | None = None) -> codec.Record:
    return codec.Record(
        "support.inbound", 3, 42, b"conv-1", value, headers or [], 1_700_000_000_000
    )


@pytest.mark.parametrize(
    ("value", "stage", "error_type"),
    [
        (b"not json", "decode", "JSONDecodeError"),
        (b'{"message_id": "m", "text": "\xff\xfe"}', "decode", "JSONDecodeError"),  # bad UTF-8
        (None, "decode", "EmptyValue"),
        (b"[1, 2]", "validate", "NotAnObject"),
        (b'"just a string"', "validate", "NotAnObject"),
        (b'{"text": "hi"}', "validate", "ValidationError"),
        (b'{"message_id": 12, "text": "hi"}', "validate", "ValidationError"),
        (b'{"message_id": "m"}', "validate", "ValidationError"),
        (b'{"message_id": "m", "text": ["hi"]}', "validate", "ValidationError"),
        (
            b'{"message_id": "m", "text": "hi", "metadata": {"a": {"b": 1}}}',
            "validate",
            "ValidationError",
        ),
        (b'{"message_id": "m", "text": "' + b"a" * 2000 + b'"}', "validate", "TextTooLong"),
        (b"[" * 5000 + b"]" * 5000, "decode", "JSONDecodeError"),  # nesting past orjson's limit
    ],
)
def test_bad_values_are_rejected_with_stage_and_type(
    value: bytes | None, stage: str, error_type: str
) -> None:
    out = codec.decode(_record(value), max_text_chars=1000)
    assert isinstance(out, codec.Rejected)
    assert (out.stage, out.error_type) == (stage, error_type), out.reason


@pytest.mark.parametrize(
    "text", ["", "   ", "\u0000nul\u0000", "emoji 🙂🚀", "שלום עולם RTL", "ctl\x07\x1b[0m", "ok"]
)
def test_odd_but_valid_texts_are_accepted(text: str) -> None:
    out = codec.decode(_record(orjson.dumps({"message_id": "m", "text": text})), 1000)
    assert isinstance(out, codec.Accepted) and out.text == text


def test_dead_letter_keeps_the_original_and_adds_the_reason() -> None:
    rec = _record(b"nope", [("traceparent", b"00-1-01")])
    out = codec.decode(rec, 1000)
    assert isinstance(out, codec.Rejected)
    headers = codec.dead_letter_headers(out)
    assert headers[0] == ("traceparent", b"00-1-01")
    h = dict(headers)
    assert h["x-error-stage"] == b"decode" and h["x-error-type"] == b"JSONDecodeError"
    assert (h["x-source-topic"], h["x-source-partition"], h["x-source-offset"]) == (
        b"support.inbound",
        b"3",
        b"42",
    )


def test_result_value_matches_the_outbound_contract() -> None:
    rec = _record(
        b'{"message_id": "m1", "conversation_id": "c", "text": "hi", "extra": 1}',
        [("traceparent", b"t"), ("content-type", b"text/plain")],
    )
    acc = codec.decode(rec, 1000)
    assert isinstance(acc, codec.Accepted)
    model = {"name": "n", "version": "v", "content_hash": "h"}
    ctx = codec.ResultContext(
        model, "p", "2026-11-24T00:00:00.000+00:00", 3.0, 1, 1_700_000_000_050.0
    )
    probs = {"auto_resolve": 0.8, "request_more_info": 0.1, "escalate_to_human": 0.1}
    preds = {"action": {"label": "auto_resolve", "confidence": 0.8, "probabilities": probs}}
    value = json.loads(
        codec.result_value(acc, "auto_resolve", "auto_resolve", "model", False, preds, ctx)
    )
    OutboundMessage.model_validate(value)
    assert value["message"]["extra"] == 1  # unknown fields pass through
    assert value["timing"]["queue_ms"] == 50.0
    headers = codec.result_headers(rec, "v")
    assert headers == [
        ("traceparent", b"t"),
        ("content-type", b"application/json"),
        ("model-version", b"v"),
    ]


def test_an_unreadable_header_key_rejects_the_record_before_its_value() -> None:
    reason = "header 0 key is not valid UTF-8: b'\\xff\\xfekey'"
    rec = codec.Record(
        "support.inbound",
        3,
        42,
        b"conv-1",
        b'{"message_id": "m", "text": "hi"}',
        [("traceparent", b"t"), ("nullable", None)],
        None,
        reason,
    )
    out = codec.decode(rec, 1000)
    assert isinstance(out, codec.Rejected)
    assert (out.stage, out.error_type, out.reason) == ("decode", "InvalidHeader", reason)
    headers = codec.dead_letter_headers(out)
    # The readable headers as they came (a null value stays null); the bad key only as text.
    assert headers[:2] == [("traceparent", b"t"), ("nullable", None)]
    assert dict(headers)["x-error-message"] == reason.encode()
    assert all(k.isascii() for k, _ in headers)


def test_a_null_header_value_is_propagated_as_null() -> None:
    rec = _record(b'{"message_id": "m", "text": "hi"}', [("nullable", None), ("t", b"")])
    assert isinstance(codec.decode(rec, 1000), codec.Accepted)
    assert codec.result_headers(rec, "v")[:2] == [("nullable", None), ("t", b"")]
