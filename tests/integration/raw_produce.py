"""Produce what confluent-kafka's Producer cannot: any header key bytes, and null header values.

Test-only: ctypes calls to rd_kafka_producev in the librdkafka that confluent_kafka.cimpl is
linked against (dlsym through cimpl's handle, as worker.kafka.headers reads with).
"""

from __future__ import annotations

import ctypes

from confluent_kafka import cimpl

RawHeaders = list[tuple[bytes, bytes | None]]
RawRecord = tuple[bytes | None, bytes | None, RawHeaders]  # key, value, headers

# rd_kafka_vtype_t (rdkafka.h)
_END, _TOPIC, _PARTITION, _VALUE, _KEY, _MSGFLAGS, _HEADER = 0, 1, 3, 4, 5, 7, 9
_MSG_F_COPY = 2  # librdkafka copies key, value and headers before producev returns
_PRODUCER = 0
_CONF_OK = 0
# void dr_msg_cb(rd_kafka_t *, const rd_kafka_message_t *, void *opaque)
_DeliveryCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)

_lib = ctypes.CDLL(cimpl.__file__)
_lib.rd_kafka_conf_new.restype = ctypes.c_void_p
_lib.rd_kafka_conf_new.argtypes = []
_lib.rd_kafka_conf_set.restype = ctypes.c_int
_lib.rd_kafka_conf_set.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
]
_lib.rd_kafka_conf_set_dr_msg_cb.restype = None
_lib.rd_kafka_conf_set_dr_msg_cb.argtypes = [ctypes.c_void_p, _DeliveryCb]
_lib.rd_kafka_conf_destroy.restype = None
_lib.rd_kafka_conf_destroy.argtypes = [ctypes.c_void_p]
_lib.rd_kafka_new.restype = ctypes.c_void_p
_lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
_lib.rd_kafka_producev.restype = ctypes.c_int  # variadic: no argtypes, every arg typed below
_lib.rd_kafka_flush.restype = ctypes.c_int
_lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
_lib.rd_kafka_destroy.restype = None
_lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
_lib.rd_kafka_err2str.restype = ctypes.c_char_p
_lib.rd_kafka_err2str.argtypes = [ctypes.c_int]


def _err(code: int) -> str:
    return f"{code}: {(_lib.rd_kafka_err2str(code) or b'').decode()}"


def _mem(data: bytes, keep: list[object]) -> ctypes.c_void_p:
    buf = ctypes.create_string_buffer(data, len(data))
    keep.append(buf)
    return ctypes.c_void_p(ctypes.addressof(buf))


def _args(topic: bytes, partition: int, rec: RawRecord, keep: list[object]) -> list[object]:
    key, value, headers = rec
    args: list[object] = [
        ctypes.c_int(_TOPIC),
        ctypes.c_char_p(topic),
        ctypes.c_int(_PARTITION),
        ctypes.c_int32(partition),
        ctypes.c_int(_MSGFLAGS),
        ctypes.c_int(_MSG_F_COPY),
    ]
    if value is not None:
        args += [ctypes.c_int(_VALUE), _mem(value, keep), ctypes.c_size_t(len(value))]
    if key is not None:
        args += [ctypes.c_int(_KEY), _mem(key, keep), ctypes.c_size_t(len(key))]
    for name, hval in headers:
        assert b"\0" not in name, "librdkafka takes header names as C strings"
        if hval is None:  # NULL with size -1: a null header value
            args += [
                ctypes.c_int(_HEADER),
                ctypes.c_char_p(name),
                ctypes.c_void_p(None),
                ctypes.c_ssize_t(-1),
            ]
        else:
            args += [
                ctypes.c_int(_HEADER),
                ctypes.c_char_p(name),
                _mem(hval, keep),
                ctypes.c_ssize_t(len(hval)),
            ]
    return [*args, ctypes.c_int(_END)]


def produce_raw(bootstrap: str, topic: str, records: list[RawRecord], partition: int = 0) -> None:
    """Produce ``records`` in order to one partition; raises unless every one is acknowledged."""
    errstr = ctypes.create_string_buffer(512)
    conf = _lib.rd_kafka_conf_new()
    # Idempotence: retries cannot reorder or double the records the test counts.
    for k, v in {"bootstrap.servers": bootstrap, "enable.idempotence": "true"}.items():
        if _lib.rd_kafka_conf_set(conf, k.encode(), v.encode(), errstr, len(errstr)) != _CONF_OK:
            _lib.rd_kafka_conf_destroy(conf)
            raise RuntimeError(f"{k}: {errstr.value.decode()}")
    acked: list[int] = []

    def delivered(_rk: int, rkmessage: int, _opaque: int) -> None:
        acked.append(ctypes.c_int.from_address(rkmessage).value)  # rd_kafka_message_t.err

    on_delivery = _DeliveryCb(delivered)  # referenced until rd_kafka_destroy
    _lib.rd_kafka_conf_set_dr_msg_cb(conf, on_delivery)
    rk = _lib.rd_kafka_new(_PRODUCER, conf, errstr, len(errstr))
    if not rk:  # on failure the conf is still ours
        _lib.rd_kafka_conf_destroy(conf)
        raise RuntimeError(f"rd_kafka_new: {errstr.value.decode()}")
    try:
        for rec in records:
            keep: list[object] = []
            err = _lib.rd_kafka_producev(
                ctypes.c_void_p(rk), *_args(topic.encode(), partition, rec, keep)
            )
            if err:
                raise RuntimeError(f"rd_kafka_producev: {_err(err)}")
        err = _lib.rd_kafka_flush(rk, 30_000)  # serves on_delivery in this thread
        if err:
            raise RuntimeError(f"rd_kafka_flush: {_err(err)}")
        failed = [_err(e) for e in acked if e]
        if failed or len(acked) != len(records):
            raise RuntimeError(f"{len(acked)}/{len(records)} delivered, errors: {failed}")
    finally:
        _lib.rd_kafka_destroy(rk)
