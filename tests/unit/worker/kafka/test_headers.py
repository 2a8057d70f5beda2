"""Reading a Message's librdkafka headers without Message.headers(), and the layout checks."""

from __future__ import annotations

import ctypes

import pytest
from confluent_kafka import Message, cimpl

from worker.kafka import headers as kafka_headers
from worker.kafka.headers import HeaderLayoutError, read_headers

_lib = ctypes.CDLL(cimpl.__file__)
_lib.rd_kafka_headers_new.restype = ctypes.c_void_p
_lib.rd_kafka_headers_new.argtypes = [ctypes.c_size_t]
_lib.rd_kafka_header_add.restype = ctypes.c_int
_lib.rd_kafka_header_add.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_ssize_t,
    ctypes.c_char_p,
    ctypes.c_ssize_t,
]


def consumed(headers: list[tuple[bytes, bytes | None]], value: bytes | None = b"{}") -> Message:
    """A Message as the consumer leaves it: librdkafka headers in c_headers, headers NULL."""
    msg = Message(
        topic="in", partition=0, offset=7, key=b"k", value=value, timestamp=(1, 1_700_000_000_000)
    )
    return with_headers(msg, headers)


def with_headers(msg: Message, headers: list[tuple[bytes, bytes | None]]) -> Message:
    """``msg`` holding ``headers`` where librdkafka puts them (c_headers), headers NULL.

    The Message owns the headers from here on and destroys them when it is freed.
    """
    hdrs = _lib.rd_kafka_headers_new(len(headers))
    for name, v in headers:
        assert _lib.rd_kafka_header_add(hdrs, name, -1, v, -1 if v is None else len(v)) == 0
    msg.set_error(None)  # the consumer's Message holds None there, not NULL
    (ctypes.c_size_t * 6).from_address(id(msg) + object.__basicsize__)[4] = hdrs
    return msg


def test_keys_are_bytes_and_a_null_value_is_none() -> None:
    raw = [(b"\xff\xfekey", b"x"), (b"nullable", None), (b"empty", b""), (b"t", b"a\0b")]
    assert read_headers(consumed(raw)) == raw


def test_no_headers_and_python_built_messages() -> None:
    assert read_headers(consumed([])) == []
    assert read_headers(Message(topic="t", value=b"v")) == []


def test_a_message_whose_headers_were_read_is_refused() -> None:
    msg = consumed([(b"a", b"1")])
    msg.headers()  # frees c_headers into the Python list; nothing left to read raw
    with pytest.raises(HeaderLayoutError, match="already called"):
        read_headers(msg)
    with pytest.raises(HeaderLayoutError, match="already called"):
        read_headers(Message(topic="t", headers=[("a", b"1")]))


def test_not_a_message_is_refused() -> None:
    with pytest.raises(HeaderLayoutError, match="expected a confluent_kafka"):
        read_headers(object())  # type: ignore[arg-type]


def test_a_shifted_layout_is_refused_without_touching_c_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka_headers.check_layout()
    monkeypatch.setattr(kafka_headers, "_HEAD", object.__basicsize__ + 8)
    with pytest.raises(HeaderLayoutError, match="not where"):
        kafka_headers.check_layout()
    with pytest.raises(HeaderLayoutError, match="not where"):
        read_headers(consumed([(b"a", b"1")]))


def test_c_headers_without_an_error_object_is_refused() -> None:
    # Only a Message built in Python leaves the error slot NULL, and it never has c_headers:
    # the pair is what a layout without the c_headers field would look like.
    msg = consumed([(b"a", b"1")])
    slots = (ctypes.c_size_t * 6).from_address(id(msg) + object.__basicsize__)
    none, slots[5] = slots[5], 0  # a borrowed None: put it back before the Message is freed
    try:
        with pytest.raises(HeaderLayoutError, match="not where"):
            read_headers(msg)
    finally:
        slots[5] = none
