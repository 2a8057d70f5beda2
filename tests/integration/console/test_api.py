"""The console's HTTP API against a real broker and a real worker: what it answers for a
tried message is what the worker committed for it."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from tests.integration.console.conftest import (
    MAX_TEXT_CHARS,
    Pipeline,
    console_on,
    events,
    group_seen,
    published,
)
from tools.console_proc import ConsoleProc


def test_a_tried_message_shows_the_result_the_worker_committed(
    console: ConsoleProc, pipeline: Pipeline
) -> None:
    status, body = console.try_message("my card was declined at the store, fix it NOW!!")
    assert status == 200, body
    assert body["status"] == "routed", body
    view = body["view"]
    topic, value = published(pipeline, body["message_id"])
    assert topic == getattr(pipeline.topics, view["route"])
    assert (view["route"], view["action"], view["reason"]) == (
        value["route"],
        value["action"],
        value["routing"]["reason"],
    )
    assert {h: p["label"] for h, p in view["heads"].items()} == {
        h: p["label"] for h, p in value["predictions"].items()
    }
    assert set(view["heads"]) == {"intent", "urgency", "sentiment", "action"}
    for head, p in view["heads"].items():  # every probability, largest first, as published
        assert dict(p["probabilities"]) == value["predictions"][head]["probabilities"]
        assert [q for _, q in p["probabilities"]] == sorted(
            (q for _, q in p["probabilities"]), reverse=True
        )
    assert view["model"] == {k: value["model"][k] for k in ("name", "version")}
    t = view["timing"]
    assert t["batch_size"] == value["timing"]["batch_size"] >= 1
    assert t["inference_ms"] == value["timing"]["inference_ms"]
    # in -> produced, then in -> read committed: the second includes the first.
    assert 0 <= t["in_to_out_ms"] <= t["end_to_end_ms"] < 30_000
    assert json.loads(view["raw"]) == value


def test_a_text_over_the_limit_shows_its_dead_letter(
    console: ConsoleProc, pipeline: Pipeline
) -> None:
    status, body = console.try_message("x" * (MAX_TEXT_CHARS + 1))
    assert status == 200, body
    assert body["status"] == "dead_letter", body
    view = body["view"]
    topic, dead = published(pipeline, body["message_id"])
    assert topic == pipeline.topics.dlq
    h = dead["headers"]
    assert (view["stage"], view["error_type"], view["reason"]) == (
        h["x-error-stage"],
        h["x-error-type"],
        h["x-error-message"],
    )
    assert (view["stage"], view["error_type"]) == ("validate", "TextTooLong")
    assert f"limit {MAX_TEXT_CHARS}" in view["reason"]


def test_with_no_worker_the_answer_says_so_within_the_timeout(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    lonely = replace(pipeline, topics=replace(pipeline.topics, inbound=make_topic("in", 1)))
    group = f"nobody-{uuid.uuid4().hex[:6]}"
    with console_on(lonely, tmp_path, "--answer-timeout", "2", group=group) as console:
        assert group_seen(console)["members"] == 0
        started = time.monotonic()
        status, body = console.try_message("is anyone there?")
        waited = time.monotonic() - started
    assert status == 200, body
    assert body["status"] == "no_answer"
    assert body["waited_s"] == 2
    assert 2 <= waited < 10
    assert body["group"]["group"] == group
    assert body["group"]["members"] == 0


def _post(console: ConsoleProc, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(console.url + "api/try", data=data, headers=headers)
    return console._call(req)


def test_only_the_page_s_own_requests_are_served(console: ConsoleProc) -> None:
    body = json.dumps({"text": "hello"}).encode()
    assert _post(console, body, {"Content-Type": "text/plain"})[0] == 415
    foreign = {"Content-Type": "application/json", "Origin": "http://evil.example"}
    assert _post(console, body, foreign)[0] == 403
    json_ct = {"Content-Type": "application/json"}
    assert _post(console, b"{not json", json_ct)[0] == 400
    assert _post(console, b'{"text": 7}', json_ct)[0] == 400
    assert _post(console, b"x" * (2 * 1024 * 1024 + 1), json_ct)[0] == 413


def _produce_over_limit(p: Pipeline, text: str) -> str:
    mid = f"live-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": p.bootstrap})
    producer.produce(p.topics.inbound, json.dumps({"message_id": mid, "text": text}).encode())
    assert producer.flush(10) == 0
    return mid


def _live_dead_letter(console: ConsoleProc, p: Pipeline, text: str) -> tuple[Any, Any]:
    """Produces a record over the limit once subscribed; (its streamed summary, stats)."""
    seen: dict[str, Any] = {}
    mid = ""

    def until(event: str, data: Any) -> bool:
        nonlocal mid
        if event == "snapshot":
            mid = _produce_over_limit(p, text)
        if event == "stats":
            seen["stats"] = data
        if event == "records":
            seen.update({r["message_id"]: r for r in data if r.get("message_id")})
        return mid in seen and "stats" in seen

    events(console, until)
    return seen[mid], seen["stats"]


def test_live_traffic_streams_without_its_text_unless_told(
    console: ConsoleProc, pipeline: Pipeline, tmp_path: Path
) -> None:
    secret = "my password is hunter2 " * 20  # over the limit: a dead letter
    assert len(secret) > MAX_TEXT_CHARS
    record, stats = _live_dead_letter(console, pipeline, secret)
    assert (record["kind"], record["stage"]) == ("dead_letter", "validate")
    assert "own" not in record
    assert record["text"] is None and record["reason"] is None
    assert record["text_hidden"] is True
    assert stats["group"]["group"] == pipeline.group

    with console_on(pipeline, tmp_path, "--show-live-text") as told:
        record, _ = _live_dead_letter(told, pipeline, secret)
    assert record["text"] == secret
    assert record["reason"] == f"text has {len(secret)} chars, limit {MAX_TEXT_CHARS}"


def _get(console: ConsoleProc, path: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(console.url + path, headers=headers)
    return console._call(req)[0]


def test_a_request_that_names_another_host_is_refused(console: ConsoleProc) -> None:
    """DNS rebinding: a foreign page whose name resolves to 127.0.0.1 sends that name."""
    port = console.url.rstrip("/").rsplit(":", 1)[1]
    for path in ("", "api/config", "api/events", "static/console.js"):
        assert _get(console, path, {"Host": f"attacker.example:{port}"}) == 421, path
    assert _get(console, "api/config", {"Host": f"localhost:{port}"}) == 200
    assert _get(console, "api/config", {"Host": f"127.0.0.1:{port}"}) == 200
    rebound = {
        "Host": f"attacker.example:{port}",
        "Origin": f"http://attacker.example:{port}",
        "Content-Type": "application/json",
    }
    assert _post(console, b'{"text": "x"}', rebound)[0] == 421
    spoofed = {**rebound, "Host": f"127.0.0.1:{port}"}
    assert _post(console, b'{"text": "x"}', spoofed)[0] == 403


def test_a_stop_with_a_page_open_ends_its_stream_and_exits_0_at_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    with console_on(pipeline, tmp_path) as c:
        stream = urllib.request.urlopen(c.url + "api/events", timeout=30)
        assert stream.readline().startswith(b"event: snapshot")
        started = time.monotonic()
        c.proc.terminate()
        assert c.proc.wait(10) == 0
        took = time.monotonic() - started
        rest = stream.read()  # the stream ended (EOF), it was not cut mid-event
        stream.close()
    assert took < 1.0, took  # not uvicorn's grace period, nor its cancellation
    assert not rest or rest.endswith(b"\n\n")
    log = c.log_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_a_committed_record_with_a_header_key_that_is_not_utf8_does_not_stop_the_tap(
    console: ConsoleProc, pipeline: Pipeline
) -> None:
    from tests.integration.raw_produce import produce_raw

    poison = b'{"message_id": "hdr-1", "text": "x"}'
    produce_raw(pipeline.bootstrap, pipeline.topics.dlq, [(b"k", poison, [(b"\xff\xfe", b"v")])])
    status, body = console.try_message("still there?")
    assert status == 200 and body["status"] == "routed", body
    assert console.get("healthz")[0] == 200
