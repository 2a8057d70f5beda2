"""Message -> Record: header keys as strict UTF-8; a key that is not rejects the record."""

from __future__ import annotations

from tests.unit.worker.kafka.test_headers import consumed
from worker import codec
from worker.kafka.clients import to_record

VALUE = b'{"message_id": "m", "text": "hi"}'


def test_readable_headers_are_kept_with_null_values() -> None:
    rec = to_record(consumed([(b"traceparent", b"t"), (b"nullable", None)], VALUE))
    assert rec.headers == [("traceparent", b"t"), ("nullable", None)]
    assert rec.header_error is None
    assert (rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.timestamp_ms) == (
        "in",
        0,
        7,
        b"k",
        VALUE,
        1_700_000_000_000,
    )
    assert isinstance(codec.decode(rec, 1000), codec.Accepted)


def test_a_key_that_is_not_utf8_is_left_out_and_named() -> None:
    # \xed\xa0\x80 is a UTF-8-encoded surrogate: strict UTF-8 refuses it, as it must.
    rec = to_record(consumed([(b"a", b"1"), (b"\xff\xfekey", b"x"), (b"\xed\xa0\x80", None)]))
    assert rec.headers == [("a", b"1")]
    assert rec.header_error == "header 1 key is not valid UTF-8: b'\\xff\\xfekey' (and 1 more)"
    out = codec.decode(rec, 1000)
    assert isinstance(out, codec.Rejected)
    assert (out.stage, out.error_type) == ("decode", "InvalidHeader")


def test_a_long_bad_key_is_truncated_in_the_reason() -> None:
    rec = to_record(consumed([(b"\xff" * 500, b"x")]))
    assert rec.header_error is not None and rec.header_error.endswith("...")
    assert len(rec.header_error) < 300


def test_the_producer_retries_a_busy_transaction_coordinator_after_5_ms_unless_told() -> None:
    from worker.kafka.clients import TXN_RETRY_BACKOFF_MS, producer_config
    from worker.settings import KafkaSettings, WorkerSettings

    assert producer_config(WorkerSettings())["retry.backoff.ms"] == TXN_RETRY_BACKOFF_MS == 5
    told = WorkerSettings(kafka=KafkaSettings(client_config={"retry.backoff.ms": "50"}))
    assert producer_config(told)["retry.backoff.ms"] == "50"
