"""A consumed record's headers as raw bytes, read without ``Message.headers()``.

confluent-kafka 2.16.1's ``Message.headers()`` builds each key with PyUnicode_FromString and
no NULL check: a key that is not UTF-8 leaves a NULL in a tuple and a pending exception, and
CPython 3.11 later dies of it (SIGSEGV or SystemError), which no ``except`` can catch. So
the worker never calls it: it reads the librdkafka headers that the consumer detached onto
the Message (its ``c_headers`` field) through librdkafka's own accessors, after checking
that the struct around that field is the one confluent_kafka.h describes.
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

from confluent_kafka import KafkaError, Message, cimpl, libversion

RawHeaders = list[tuple[bytes, bytes | None]]


class HeaderLayoutError(RuntimeError):
    """confluent_kafka.Message is not laid out as this module reads it: refuse to run."""


# confluent_kafka.h: typedef struct { PyObject_HEAD; PyObject *topic, *value, *key, *headers;
# rd_kafka_headers_t *c_headers; PyObject *error; int32_t partition; ... } Message;
_HEAD: Final = object.__basicsize__  # sizeof(PyObject)
_TOPIC, _VALUE, _KEY, _HEADERS, _C_HEADERS, _ERROR = range(6)
_Slots = ctypes.c_size_t * 6  # pointers as integers; NULL reads as 0
_MOVED: Final = "Message fields are not where confluent_kafka.h puts them"

# dlsym through the extension's own handle searches cimpl and then the libraries it was
# linked against, so these are the functions cimpl itself calls: the bundled
# confluent_kafka.libs/librdkafka-*.so here, or a system librdkafka in a source build.
# (/proc/self/maps is Linux-only and ambiguous when two copies are mapped; a glob of
# confluent_kafka.libs misses source builds.) PyDLL keeps the GIL during each call, so no
# other thread can free the Message's headers under it.
_lib = ctypes.PyDLL(cimpl.__file__)
_lib.rd_kafka_version.restype = ctypes.c_int
_lib.rd_kafka_version.argtypes = []
_lib.rd_kafka_header_cnt.restype = ctypes.c_size_t
_lib.rd_kafka_header_cnt.argtypes = [ctypes.c_void_p]
_lib.rd_kafka_header_get_all.restype = ctypes.c_int  # rd_kafka_resp_err_t, 0 = found
_lib.rd_kafka_header_get_all.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_size_t),
]


def _addr(obj: Any) -> int:
    return 0 if obj is None else id(obj)


def _slots(msg: Message) -> ctypes.Array[ctypes.c_size_t]:
    if not isinstance(msg, Message):
        raise HeaderLayoutError(f"expected a confluent_kafka.Message, got {type(msg).__name__}")
    return _Slots.from_address(id(msg) + _HEAD)


def _refuse(why: str) -> HeaderLayoutError:
    return HeaderLayoutError(f"confluent_kafka {libversion()[0]}: {why}; not reading headers")


def read_headers(msg: Message) -> RawHeaders:
    """(key, value) pairs as librdkafka holds them; a null value is None. Never headers()."""
    s = _slots(msg)
    err = msg.error()
    # A consumed Message's error slot always holds an object (None or a KafkaError); only a
    # Message built in Python leaves it NULL, and such a Message never has c_headers.
    err_ok = s[_ERROR] == id(err) or (err is None and s[_ERROR] == 0 and s[_C_HEADERS] == 0)
    if not (
        s[_TOPIC] == _addr(msg.topic())
        and s[_VALUE] == _addr(msg.value())
        and s[_KEY] == _addr(msg.key())
        and err_ok
    ):
        raise _refuse(_MOVED)
    if s[_HEADERS] != 0:  # headers() was called or set_headers() used: c_headers is stale
        raise _refuse("Message.headers() was already called on this message")
    hdrs = s[_C_HEADERS]
    if not hdrs:
        return []
    out: RawHeaders = []
    name, value, size = ctypes.c_char_p(), ctypes.c_void_p(), ctypes.c_size_t()
    for idx in range(_lib.rd_kafka_header_cnt(hdrs)):
        if _lib.rd_kafka_header_get_all(
            hdrs, idx, ctypes.byref(name), ctypes.byref(value), ctypes.byref(size)
        ):
            raise RuntimeError(f"librdkafka lost header {idx} of {_lib.rd_kafka_header_cnt(hdrs)}")
        # Names are NUL-terminated copies in librdkafka; a NULL value pointer is a null value.
        key = name.value or b""
        out.append(
            (key, None if value.value is None else ctypes.string_at(value.value, size.value))
        )
    return out


def check_layout() -> None:
    """Fail at import, not on the first record, on a confluent-kafka this module cannot read."""
    if libversion()[1] != _lib.rd_kafka_version():
        raise _refuse(
            f"librdkafka through cimpl is {_lib.rd_kafka_version():#x}, not the one it reports"
        )
    if Message.__basicsize__ < _HEAD + ctypes.sizeof(_Slots):
        raise _refuse(f"Message is only {Message.__basicsize__} bytes")
    # Every field set, and distinct: each slot must hold exactly its object, c_headers NULL.
    topic, value, key = "layout-probe", b"value", b"key"
    headers: list[tuple[str, str | bytes | None]] = [("h", b"v")]
    error = KafkaError(KafkaError._PARTITION_EOF)
    try:
        probe = Message(topic=topic, value=value, key=key, headers=headers, error=error)
    except TypeError as exc:  # a confluent-kafka whose Message() takes no such fields
        raise _refuse(f"cannot build a probe Message: {exc}") from exc
    if list(_slots(probe)) != [id(topic), id(value), id(key), id(headers), 0, id(error)]:
        raise _refuse(_MOVED)


check_layout()
