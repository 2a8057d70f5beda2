"""Header keys that are not UTF-8 and null header values, on a real broker (issue 9, defect 2).

confluent-kafka's Message.headers() kills the process (SIGSEGV or SystemError) on a key that
is not UTF-8; the worker must dead-letter such a record and keep running.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Message

from tests.integration.raw_produce import RawRecord, produce_raw
from tests.integration.worker.harness import (
    Topics,
    WorkerProc,
    make_topics,
    message,
    start_worker,
)
from worker.kafka.headers import RawHeaders, read_headers

BAD_KEY = b"\xff\xfekey"


@dataclass
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    raw: RawHeaders  # read without Message.headers()
    msg: Message


def _json(i: int) -> bytes:
    return json.dumps(message(i)).encode()


def read_raw(bootstrap: str, topics: Topics, expect: int, worker: WorkerProc) -> list[Out]:
    """Every committed record on the outputs, headers read raw: a bad key here cannot crash us.

    Until ``expect`` arrived and 3 s more (a duplicate would come now), 90 s, or the worker died.
    """
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(topics.outputs())
    out: list[Out] = []
    deadline, quiet_until = time.monotonic() + 90, None
    while time.monotonic() < deadline and worker.proc.poll() is None:
        for m in c.consume(100, timeout=0.5):
            assert m.error() is None, m.error()
            out.append(Out(m.topic() or "", m.key(), m.value(), read_headers(m), m))
        if len(out) >= expect:
            quiet_until = quiet_until or time.monotonic() + 3
            if time.monotonic() > quiet_until:
                break
    c.close()
    return out


def test_a_header_key_that_is_not_utf8_is_dead_lettered_and_null_values_kept(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic, partitions=1)

    # Normal records first: once CPython 3.11 has specialized the headers() call (8 calls),
    # the bad key segfaults the old code instead of raising SystemError, as in a worker
    # that has been running a while. Then the bad key, a null value, and normal ones again.
    def normal(i: int) -> RawRecord:
        return (f"k{i}".encode(), _json(i), [(b"traceparent", f"00-{i}-01".encode())])

    records: list[RawRecord] = [
        *map(normal, range(10)),
        (b"bad-key", _json(10), [(BAD_KEY, b"x"), (b"traceparent", b"00-10-01")]),
        (b"null-value", _json(11), [(b"nullable", None), (b"traceparent", b"00-11-01")]),
        *map(normal, range(12, 17)),
    ]
    produce_raw(kafka_bootstrap, topics.inbound, records)
    tag = uuid.uuid4().hex[:8]
    w = start_worker(
        kafka_bootstrap, topics, smoke_artifact, tmp_path, group=f"g-{tag}", txn_id=f"t-{tag}"
    )
    try:
        w.wait_ready()
        got = read_raw(kafka_bootstrap, topics, len(records), w)
        assert w.proc.poll() is None, f"the worker died:\n{w.tail()}"
        # No unreadable key was passed on: every output key is UTF-8.
        for o in got:
            for k, _ in o.raw:
                k.decode()
        dead = [o for o in got if o.topic == topics.dlq]
        results = [o for o in got if o.topic != topics.dlq]
        assert [d.key for d in dead] == [b"bad-key"], [d.key for d in dead]
        d = {k.decode(): v for k, v in dead[0].raw}
        assert (d["x-error-stage"], d["x-error-type"]) == (b"decode", b"InvalidHeader")
        assert d["x-error-message"] == b"header 0 key is not valid UTF-8: b'\\xff\\xfekey'"
        assert d["traceparent"] == b"00-10-01"  # the readable headers are kept
        assert dead[0].value == _json(10)
        # Everything else routed, once each.
        ids = sorted(json.loads(o.value or b"")["message_id"] for o in results)
        assert ids == sorted(f"m{i}" for i in range(17) if i != 10), ids
        null = next(o for o in results if o.key == b"null-value")
        assert (b"nullable", None) in null.raw and (b"traceparent", b"00-11-01") in null.raw
        # confluent-kafka's own reader agrees (safe: all of this record's keys are UTF-8).
        assert ("nullable", None) in (null.msg.headers() or [])
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(30) == 0, w.tail()
