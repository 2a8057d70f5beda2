"""``support-worker dlq replay`` on a real broker (issue 11, item 6).

Dead letters made the real way: a worker whose model fails on marked texts
(tests/chaos/faulty_worker.py) dead-letters them with stage ``infer``, and malformed
records get stage decode or validate. Then, the model fixed, a plain worker resumes the
same group, and only the ``infer`` letters are replayed: each must be routed exactly
once, a second replay must replay nothing, and a dry run must produce nothing. A pointer
dead letter and one with a header key that is not UTF-8 sit in the DLQ too: reported,
never replayed, never a crash.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas.messages import HEADER_REPLAY_OF
from tests.chaos.faulty_worker import FAIL_MARKER
from tests.integration.raw_produce import produce_raw
from tests.integration.worker.harness import (
    MALFORMED,
    Topics,
    committed_reader,
    end_offsets,
    message,
    start_worker,
)
from worker.cli import main
from worker.codec import Record
from worker.kafka.clients import to_record

N = 24
MARKED = {f"m{i}" for i in range(1, N, 4)}  # 6 messages the faulty model fails on
BAD = MALFORMED[:3]  # stages decode, decode, validate


def read_all(bootstrap: str, topics: list[str], expect: int, timeout: float = 60) -> list[Record]:
    """Every committed record of ``topics``, until ``expect`` arrived and 3 s more (a
    duplicate would arrive then). Headers through worker.kafka.clients: a bad key cannot
    crash it."""
    c = committed_reader(bootstrap)
    c.subscribe(topics)
    out: list[Record] = []
    deadline, quiet_until = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        for m in c.consume(500, timeout=0.5):
            assert m.error() is None, m.error()
            out.append(to_record(m))
        if len(out) >= expect:
            quiet_until = quiet_until or time.monotonic() + 3
            if time.monotonic() > quiet_until:
                break
    c.close()
    return out


def header(r: Record, name: str) -> bytes | None:
    return dict(r.headers).get(name)


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["dlq", "replay", "--stage", "infer", *args])
    return code, capsys.readouterr().out.splitlines()


def test_replay_routes_each_selected_letter_once_and_a_second_run_nothing(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    smoke_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = Topics(
        inbound=make_topic("in", 2),
        escalate=make_topic("esc", 1),
        auto_resolve=make_topic("auto", 1),
        more_info=make_topic("more", 1),
        dlq=make_topic("dlq", 2),
    )
    routes = [topics.escalate, topics.auto_resolve, topics.more_info]
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    sent: dict[str, tuple[bytes, bytes]] = {}
    for i in range(N):
        msg = message(i)
        if msg["message_id"] in MARKED:
            msg["text"] = f"{FAIL_MARKER} my card was declined"
        key, value = msg["conversation_id"].encode(), json.dumps(msg).encode()
        sent[msg["message_id"]] = (key, value)
        headers = [("traceparent", f"00-{i}-01".encode()), ("x-client", b"dropped on replay")]
        p.produce(topics.inbound, key=key, value=value, headers=headers)
    for j, bad in enumerate(BAD):
        p.produce(topics.inbound, key=f"bad-{j}".encode(), value=bad)
    assert p.flush(30) == 0

    # 1. The faulty model: the marked messages become infer dead letters.
    tag = uuid.uuid4().hex[:8]
    group, txn = f"g-{tag}", f"t-{tag}"
    extra = {"CHAOS_FAIL_MARKER": FAIL_MARKER}
    faulty = start_worker(
        kafka_bootstrap,
        topics,
        smoke_artifact,
        tmp_path,
        group=group,
        txn_id=txn,
        module="tests.chaos.faulty_worker",
        extra_env=extra,
    )
    faulty.wait_ready()
    first = read_all(kafka_bootstrap, [*routes, topics.dlq], N + len(BAD))
    faulty.signal(signal.SIGTERM)
    assert faulty.wait(30) == 0, faulty.tail()
    letters = [r for r in first if r.topic == topics.dlq]
    stages = Counter(header(r, "x-error-stage") for r in letters)
    assert stages == {b"infer": len(MARKED), b"decode": 2, b"validate": 1}
    infer_ids = {
        json.loads(r.value or b"")["message_id"]
        for r in letters
        if header(r, "x-error-stage") == b"infer"
    }
    assert infer_ids == MARKED

    # Letters the replay must report and skip: a pointer (no value) and a header key that
    # is not UTF-8, both stage infer.
    ours = [(b"x-error-stage", b"infer"), (b"x-error-type", b"InjectedModelError")]
    produce_raw(
        kafka_bootstrap,
        topics.dlq,
        [
            (
                None,
                None,
                [
                    *ours,
                    (b"x-source-topic", topics.inbound.encode()),
                    (b"x-dead-letter-pointer", b"1"),
                ],
            ),
            (b"k", sent["m0"][1], [(b"\xff\xfebad", b"v"), *ours]),
        ],
        partition=1,
    )
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SUPPORT_WORKER_TOPICS__INBOUND", topics.inbound)
    monkeypatch.setenv("SUPPORT_WORKER_TOPICS__DLQ", topics.dlq)
    inbound_before = sum(end_offsets(kafka_bootstrap, topics.inbound, 2))
    replay_group = f"replay-{tag}"

    # 2. A dry run lists the six and the two, and produces and commits nothing.
    code, dry = replay(capsys, "--group", replay_group, "--dry-run")
    assert code == 0, dry
    assert sum(line.startswith("would replay partition=") for line in dry) == len(MARKED)
    assert {line.split("message_id=")[1] for line in dry if "would replay p" in line} == MARKED
    unreplayable = [line for line in dry if line.startswith("unreplayable")]
    assert len(unreplayable) == 2, dry
    assert any("pointer dead letter" in line for line in unreplayable)
    assert any("unreadable headers" in line for line in unreplayable)
    assert sum(end_offsets(kafka_bootstrap, topics.inbound, 2)) == inbound_before

    # 3. Replay in two runs (a limit, then the rest), then once more: 2 + 4 + 0.
    code, part = replay(capsys, "--group", replay_group, "--limit", "2", "--batch-size", "1")
    assert code == 0 and part[-1] == "stopped at --limit 2; run again to go on", part
    code, rest = replay(capsys, "--group", replay_group)
    assert code == 0, rest
    done = [ln for ln in part + rest if ln.startswith("replayed partition=")]
    assert len(done) == len(MARKED)
    replayed = read_all(kafka_bootstrap, [topics.inbound], N + len(BAD) + len(MARKED))
    copies = [r for r in replayed if header(r, HEADER_REPLAY_OF) is not None]
    assert len(copies) == len(MARKED)
    infer_letters = {
        f"{r.topic}/{r.partition}/{r.offset}".encode(): r
        for r in letters
        if header(r, "x-error-stage") == b"infer"
    }
    for r in copies:
        mid = json.loads(r.value or b"")["message_id"]
        assert (r.key, r.value) == sent[mid]  # the original key and value
        assert [k for k, _ in r.headers] == ["traceparent", HEADER_REPLAY_OF]
        letter = infer_letters[header(r, HEADER_REPLAY_OF) or b""]
        assert letter.value == r.value and letter.key == r.key

    # 4. The model fixed: the plain worker resumes the group and routes the replays.
    plain = start_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path, group=group, txn_id=txn)
    plain.wait_ready()
    inbound_after = sum(end_offsets(kafka_bootstrap, topics.inbound, 2))
    code, again = replay(capsys, "--group", replay_group)
    assert code == 0 and again[0].startswith("replayed 0 of 0 dead letters"), again
    assert "0 transaction(s)" in again[0]
    outputs = read_all(kafka_bootstrap, [*routes, topics.dlq], N + len(BAD) + 2 + len(MARKED))
    plain.signal(signal.SIGTERM)
    assert plain.wait(30) == 0, plain.tail()
    results = [r for r in outputs if r.topic in routes]
    per_id = Counter(json.loads(r.value or b"")["message_id"] for r in results)
    assert per_id == dict.fromkeys(sent, 1)  # every message routed exactly once
    assert {
        json.loads(r.value or b"")["message_id"]
        for r in results
        if header(r, HEADER_REPLAY_OF) is not None
    } == MARKED
    assert len([r for r in outputs if r.topic == topics.dlq]) == len(letters) + 2  # no new ones
    assert sum(end_offsets(kafka_bootstrap, topics.inbound, 2)) == inbound_after  # run 3 wrote 0
    print(
        f"\ndlq replay: {len(letters)} dead letters (+2 odd), dry run listed {len(MARKED)}, "
        f"replayed {len(done)} in 2 runs, third run 0; routed once each: {len(per_id)} ids"
    )
