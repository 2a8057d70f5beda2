"""Every kind of bad input ends in the dead-letter topic or a correct route, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from schemas.messages import ROUTES
from tests.integration.worker.harness import make_topics, read_committed, running_worker

MB = 1_000_000
ODD = "nul\u0000 ctl\x07 emoji \U0001f621 rtl \u05e9\u05dc\u05d5\u05dd"
HUGE = dict.fromkeys(map(str, range(5000)), 1)
DEEP = b'{"message_id": "d", "text": "x", "a": ' + b"[" * 3000 + b"]" * 3000 + b"}"
# Readable (orjson reads 1,024 levels) but not writable (it writes about 254).
DEEP_300 = b'{"message_id": "d3", "text": "hi", "a": ' + b"[" * 300 + b"]" * 300 + b"}"


def _json(**fields: object) -> bytes:
    return json.dumps(fields).encode()


CASES: list[tuple[str, bytes | None, bytes, str]] = [
    # (key, produced key, value, where it must land: a route, or dlq:<stage>)
    ("not-json", b"k", b"this is not json", "dlq:decode"),
    ("bad-utf8", b"k", b'{"message_id": "x", "text": "\xc3\x28"}', "dlq:decode"),
    ("array", b"k", b"[1, 2, 3]", "dlq:validate"),
    ("no-id", b"k", b'{"text": "hello"}', "dlq:validate"),
    ("int-id", b"k", b'{"message_id": 42, "text": "hello"}', "dlq:validate"),
    ("no-text", b"k", b'{"message_id": "no-text"}', "dlq:validate"),
    ("int-text", b"k", b'{"message_id": "int-text", "text": 7}', "dlq:validate"),
    (
        "nested-meta",
        b"k",
        _json(message_id="nm", text="hi", metadata={"a": {"b": {"c": 1}}}),
        "dlq:validate",
    ),
    ("huge-meta", b"k", _json(message_id="hm", text="hi", metadata=HUGE), "dlq:validate"),
    ("deep-json", b"k", DEEP, "dlq:decode"),
    ("deep-300", b"k", DEEP_300, "dlq:serialize"),
    ("one-mb", b"k", _json(message_id="big", text="a" * MB), "dlq:validate"),
    ("empty", b"k", b'{"message_id": "empty", "text": ""}', "escalate"),
    ("null-key", None, b'{"message_id": "null-key", "text": "where is my refund"}', "route"),
    ("odd-chars", b"k", _json(message_id="odd", text=ODD), "route"),
]


def test_bad_input_ends_in_the_dlq_or_a_route(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic, partitions=1)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4 * MB})
    for name, key, value, _ in CASES:
        p.produce(topics.inbound, key=key, value=value, headers=[("case", name.encode())])
    assert p.flush(30) == 0
    with running_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path) as w:
        got = read_committed(kafka_bootstrap, topics, len(CASES), timeout=60)
        landed: dict[str, str] = {}
        for _, headers in got.dead:
            landed[headers["case"].decode()] = "dlq:" + headers["x-error-stage"].decode()
        for _, value, msg in got.results:
            landed[dict(msg.headers())["case"].decode()] = value["route"]
        for name, _, _, expected in CASES:
            where = landed.get(name)
            assert where is not None, f"{name} was dropped"
            if expected == "route":
                assert where in ROUTES, (name, where)
            else:
                assert where == expected, (name, where)
        assert len(got.dead) + len(got.results) == len(CASES)
        assert w.proc.poll() is None, "the worker must survive all of it"


def test_a_result_the_broker_refuses_becomes_a_produce_dead_letter(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    # Route topics that take a normal result but not one carrying a 3,000-char text.
    topics = make_topics(make_topic, partitions=1, route_config={"max.message.bytes": "1500"})
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for i, text in enumerate(["where is my refund", "x " * 1500, "my card was declined"]):
        p.produce(topics.inbound, key=f"k{i}".encode(), value=_json(message_id=f"m{i}", text=text))
    assert p.flush(30) == 0
    settings = {"BATCHING__MAX_WAIT_MS": "500"}
    with running_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path, **settings) as w:
        got = read_committed(kafka_bootstrap, topics, 3, timeout=60)
        # Nothing lost, nothing doubled, the worker not stuck retrying: the culprit is a
        # produce dead letter. The broker refuses whole requests, so a result that shared
        # the culprit's request may be dead-lettered with it (original bytes kept).
        dead = dict(got.dead)
        routed = {v["message_id"] for _, v, _ in got.results}
        assert "k1" in dead and "m1" not in routed
        assert len(dead) + len(routed) == 3 and len(got.dead) == len(dead)
        for headers in dead.values():
            assert headers["x-error-stage"] == b"produce"
            assert headers["x-error-type"] == b"MSG_SIZE_TOO_LARGE"
        assert w.metric("support_transaction_aborts_total") == 1


def test_a_record_too_large_even_for_the_dlq_is_dead_lettered_truncated_once(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    """Issue 9, defect 5: a zstd-compressed 5 MB record fits inbound, its dead letter does
    not fit anywhere. It used to abort every transaction (201 in 2 minutes) and stall the
    partition; now it steps down to a truncated dead letter, and what follows is routed."""
    topics = make_topics(make_topic, partitions=1)
    p = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "compression.type": "zstd",
            "message.max.bytes": 8 * MB,
        }
    )
    huge = _json(message_id="huge", text="where is my refund " * 280_000)  # ~5.3 MB
    p.produce(topics.inbound, key=b"huge", value=huge)
    for i in range(5):
        p.produce(topics.inbound, key=f"k{i}".encode(), value=_json(message_id=f"m{i}", text="hi"))
    assert p.flush(30) == 0
    with running_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path) as w:
        got = read_committed(kafka_bootstrap, topics, 6, timeout=60)
        assert sorted(v["message_id"] for _, v, _ in got.results) == [f"m{i}" for i in range(5)]
        ((key, headers),) = got.dead
        # why it is a dead letter (its text is too long), and that the copy is cut
        assert key == "huge" and headers["x-error-type"] == b"TextTooLong"
        assert headers["x-dead-letter-truncated"] == str(len(huge)).encode()
        assert w.metric("support_transaction_aborts_total") == 1
        assert w.proc.poll() is None
