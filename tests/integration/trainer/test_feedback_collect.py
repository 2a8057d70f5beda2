"""``support-trainer feedback collect | forget`` on a real broker, as subprocesses.

Routed results go to the route topics in committed transactions as the worker writes
them (and one in an aborted transaction, which read_committed must never show), review
items wrap some of them, and agents' feedback holds two corrections of one message (the
later one by time was produced first), a correction of a message never routed, and
three invalid records. The collector must write one row per corrected message, dead-letter
exactly the invalid records, count the unmatched, add nothing on a second run, and keep
an erased customer out for good.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from schemas import messages as m
from tests.unit.trainer.feedback.builders import feedback, result, review_item
from trainer.data.records import read_labelled
from trainer.feedback import records
from trainer.feedback.join import Correction
from trainer.feedback.store import STORE_FILE, Store
from worker.codec import Record, Rejected
from worker.kafka.clients import to_record

SUPPORT_TRAINER = Path(sys.executable).parent / "support-trainer"
INVALID = {
    "garbage": b"\x00\xff\xfe garbage",
    "bad-label": json.dumps(feedback("m3", intent="world_domination")).encode(),
    "oversize": b" " * (17 * 1024),
}


@dataclass
class Topics:
    escalate: str
    auto_resolve: str
    more_info: str
    review: str
    feedback: str
    dlq: str

    def env(self, bootstrap: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_WORKER_")}
        env["SUPPORT_WORKER_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
        for role, name in self.__dict__.items():
            env[f"SUPPORT_WORKER_TOPICS__{role.upper()}"] = name
        return env


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> Topics:
    return Topics(
        escalate=make_topic("esc", 2),
        auto_resolve=make_topic("auto", 1),
        more_info=make_topic("more", 1),
        review=make_topic("review", 1),
        feedback=make_topic("feedback", 2),
        dlq=make_topic("dlq", 1),
    )


def produce_routed(
    bootstrap: str, records: list[tuple[str, dict[str, Any]]], *, abort: bool = False
) -> None:
    """In one transaction, as the worker does (commit markers included)."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    p.init_transactions(30)
    p.begin_transaction()
    for topic, value in records:
        message_id = value.get("message_id") or value["result"]["message_id"]
        p.produce(topic, key=message_id.encode(), value=json.dumps(value).encode())
    if abort:
        assert p.flush(30) == 0  # written, then aborted: read_committed must skip it
        p.abort_transaction(30)
    else:
        p.commit_transaction(30)


def produce_feedback(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        p.produce(topic, key=key.encode(), value=value, headers=[("origin", b"console")])
    assert p.flush(30) == 0


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list[Record]:
    """Every committed record of a one-partition topic, up to its end."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.subscribe([topic])
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                return out
            assert err is None, err
            out.append(to_record(msg))
    finally:
        c.close()
    raise AssertionError(f"{topic}: no end within {timeout}s")


def run(topics: Topics, bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SUPPORT_TRAINER), "feedback", *args],
        env=topics.env(bootstrap),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def collect(topics: Topics, bootstrap: str, out: Path, group: str) -> str:
    done = run(
        topics, bootstrap, "collect", "--out", str(out), "--group", group, "--timeout-s", "90"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rows(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "dataset.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["message_id"]: r for r in map(json.loads, lines)}


def manifest(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return loaded


def test_collect_joins_dead_letters_once_is_idempotent_and_forget_sticks(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    out, group = tmp_path / "feedback-data", f"g-{uuid.uuid4().hex[:8]}"
    routed = {
        "m1": result("m1", customer_id="alice", text="i want my money back"),
        "m2": result("m2", customer_id="alice", text="my card was declined"),
        "m3": result("m3", customer_id="bob", text="how do i reset my pin"),
        "m4": result("m4", customer_id=None, text="what are your opening hours?"),
        "m5": result("m5", text="", predicted=False),
        "m6": result("m6", customer_id="carol", text="THIS IS THE WORST SERVICE"),
    }
    produce_routed(
        kafka_bootstrap,
        [
            (topics.escalate, routed["m1"]),
            (topics.auto_resolve, routed["m2"]),
            (topics.review, review_item(routed["m2"])),
            (topics.more_info, routed["m3"]),
            (topics.escalate, routed["m4"]),
            (topics.more_info, routed["m5"]),
            (topics.review, review_item(routed["m6"], "unfamiliar")),  # its route copy: gone
        ],
    )
    produce_routed(kafka_bootstrap, [(topics.escalate, result("m-aborted"))], abort=True)
    valid = [
        ("m1", feedback("m1", minutes=5, intent="account_access", agent="a-2")),  # latest
        ("m1", feedback("m1", minutes=1, intent="refund_request")),  # produced later, older
        ("m2", feedback("m2", review_reason="low_confidence", urgency="high")),
        ("m3", feedback("m3", sentiment="calm", action="auto_resolve")),
        ("m4", feedback("m4", intent="general_question")),
        ("m5", feedback("m5", intent="general_question")),  # blank text: no row
        ("m6", feedback("m6", review_reason="unfamiliar", sentiment="angry")),
        ("ghost", feedback("ghost", intent="billing_issue")),  # never routed
        ("m-aborted", feedback("m-aborted", intent="billing_issue")),  # routed, aborted
    ]
    produce_feedback(
        kafka_bootstrap,
        topics.feedback,
        [(k, json.dumps(v).encode()) for k, v in valid] + list(INVALID.items()),
    )

    # First run: everything.
    printed = collect(topics, kafka_bootstrap, out, group)
    data = rows(out)
    assert sorted(data) == ["m1", "m2", "m3", "m4", "m6"]
    assert data["m1"]["intent"] == "account_access" and data["m1"]["agent_id"] == "a-2"
    assert data["m2"]["review_reason"] == "low_confidence" and data["m2"]["urgency"] == "high"
    assert data["m2"]["intent"] is None and data["m2"]["customer_id"] == "alice"
    assert data["m4"]["customer_id"] is None
    assert data["m6"]["text"] == "THIS IS THE WORST SERVICE"  # joined through the review item
    assert data["m3"]["predicted"] == {
        "action": "auto_resolve",
        "intent": "refund_request",
        "sentiment": "calm",
        "urgency": "low",
    }
    assert data["m3"]["model_version"] == "2025.03.01-1"
    assert data["m3"]["classified_at"] == "2025-03-01T11:00:00.000000Z"
    assert data["m3"]["at"] == "2025-03-01T12:00:00Z"
    examples, _ = read_labelled(out / "dataset.jsonl")
    assert len(examples) == 5 and {e.collection for e in examples} == {"feedback"}

    meta = manifest(out)
    counts = meta["counts"]
    assert meta["fingerprint"] == hashlib.sha256((out / "dataset.jsonl").read_bytes()).hexdigest()
    assert (counts["feedback_read"], counts["valid"], counts["invalid"]) == (12, 9, 3)
    assert (counts["superseded"], counts["unmatched"], counts["blank_text"]) == (1, 2, 1)
    assert counts["examples"] == 5
    assert sorted(meta["unmatched_message_ids"]) == ["ghost", "m-aborted"]
    assert counts["labels"]["intent"]["account_access"] == 1
    assert counts["review_reason"] == {"unfamiliar": 1, "low_confidence": 1, "random": 0, "none": 3}
    assert sum(meta["positions"]["feedback"][topics.feedback].values()) >= 12
    assert meta["fingerprint"] in printed and "5 new" in printed

    letters = read_topic(kafka_bootstrap, topics.dlq)
    assert sorted(r.key or b"" for r in letters) == sorted(k.encode() for k in INVALID)
    for letter in letters:
        h = dict(letter.headers)
        assert h[m.HEADER_STAGE] in (b"decode", b"validate")
        assert h[m.HEADER_TYPE] and h[m.HEADER_MESSAGE]
        assert h[m.HEADER_SOURCE_TOPIC] == topics.feedback.encode()
        assert h["origin"] == b"console"  # the original headers, untouched
        assert letter.value == INVALID[(letter.key or b"").decode()]

    # Second run: nothing new, no dead letter again.
    printed = collect(topics, kafka_bootstrap, out, group)
    assert manifest(out)["fingerprint"] == meta["fingerprint"]
    assert manifest(out)["counts"] == counts
    assert "0 new record(s)" in printed and "0 new, 0 changed, 0 removed" in printed
    assert len(read_topic(kafka_bootstrap, topics.dlq)) == len(INVALID)

    # Erasure: alice's two messages go, and stay gone.
    done = run(topics, kafka_bootstrap, "forget", "--dataset", str(out), "--customer-id", "alice")
    assert done.returncode == 0, done.stderr
    assert "removed 2 example(s)" in done.stdout
    assert sorted(rows(out)) == ["m3", "m4", "m6"]
    assert "alice" not in (out / "dataset.jsonl").read_text()

    routed["m7"] = result("m7", customer_id="alice", text="where is my refund")
    routed["m8"] = result("m8", customer_id="dave", text="i can't log in")
    produce_routed(
        kafka_bootstrap, [(topics.escalate, routed["m7"]), (topics.escalate, routed["m8"])]
    )
    produce_feedback(
        kafka_bootstrap,
        topics.feedback,
        [
            (mid, json.dumps(feedback(mid, minutes=9, intent="refund_request")).encode())
            for mid in ("m1", "m7", "m8")
        ],
    )
    printed = collect(topics, kafka_bootstrap, out, group)
    assert sorted(rows(out)) == ["m3", "m4", "m6", "m8"]
    final = manifest(out)["counts"]
    assert final["erased"] == 4  # m1, m2 by forget; m1 again and m7 kept out by collect
    assert "1 new, 0 changed, 0 removed" in printed
    assert len(read_topic(kafka_bootstrap, topics.dlq)) == len(INVALID)


def test_a_crash_between_the_store_and_kafka_commits_dead_letters_once(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = Topics(
        escalate=make_topic("esc", 1),
        auto_resolve=make_topic("auto", 1),
        more_info=make_topic("more", 1),
        review=make_topic("review", 1),
        feedback=make_topic("feedback", 1),
        dlq=make_topic("dlq", 1),
    )
    out, group = tmp_path / "d", f"g-{uuid.uuid4().hex[:8]}"
    produce_routed(kafka_bootstrap, [(topics.escalate, result("m1"))])
    produce_feedback(
        kafka_bootstrap,
        topics.feedback,
        [("m1", json.dumps(feedback("m1")).encode()), ("bad-1", b"{"), ("bad-2", b"[]")],
    )
    # As a run that died after step 5b left it: the chunk is in the store, the group's
    # offsets and the dead letters are not in Kafka.
    read = read_topic(kafka_bootstrap, topics.feedback)
    decoded = [records.decode_feedback(r) for r in read]
    out.mkdir()
    with Store(out / STORE_FILE) as db:
        db.bind_group(group)
        db.apply_feedback(
            topics.feedback,
            [d for d in decoded if isinstance(d, Correction)],
            [
                (r.partition, r.offset)
                for r, d in zip(read, decoded, strict=True)
                if isinstance(d, Rejected)
            ],
            {0: read[-1].offset + 1},
        )

    collect(topics, kafka_bootstrap, out, group)
    counts = manifest(out)["counts"]
    assert (counts["feedback_read"], counts["valid"], counts["invalid"]) == (3, 1, 2)
    assert counts["examples"] == 1
    assert sorted(r.key or b"" for r in read_topic(kafka_bootstrap, topics.dlq)) == [
        b"bad-1",
        b"bad-2",
    ]
    collect(topics, kafka_bootstrap, out, group)
    assert len(read_topic(kafka_bootstrap, topics.dlq)) == 2

    # Another directory under the same group would silently miss what the group passed.
    done = run(topics, kafka_bootstrap, "collect", "--out", str(tmp_path / "new"), "--group", group)
    assert done.returncode == 1
    assert "the store was replaced or lost" in done.stderr


def test_an_unreachable_broker_fails_in_one_line(tmp_path: Path) -> None:
    topics = Topics(*(f"t.{role}" for role in ("esc", "auto", "more", "review", "fb", "dlq")))
    env = topics.env("127.0.0.1:1") | {"SUPPORT_WORKER_KAFKA__ADMIN_TIMEOUT_S": "2"}
    started = time.monotonic()
    done = subprocess.run(
        [str(SUPPORT_TRAINER), "feedback", "collect", "--out", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("support-trainer: cannot reach Kafka at 127.0.0.1:1 within 2s")
    assert time.monotonic() - started < 30
