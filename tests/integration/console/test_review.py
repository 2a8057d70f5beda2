"""The review page's API (``--review``) and the shadow panel's, against the real broker:
queued items read from a review topic, corrections produced to a feedback topic and read
back as valid ``Feedback`` records, agreement, and shadow results."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.learning import Feedback
from tests.integration.console.conftest import (
    Pipeline,
    console_on,
    learning_topics,
    produce_values,
    read_all,
)
from tests.unit.worker.console.records import (
    MODEL_VERSION,
    feedback_value,
    labelled,
    review_value,
    shadow_value,
)
from tools import REPO
from tools.console_proc import ConsoleProc
from worker.errors import ExitCode

KEY = b"test-agent-key-0123456789"
MODEL = labelled()  # what every test item's model said
CORRECTED = {
    "intent": "refund_request",
    "urgency": MODEL["urgency"]["label"],
    "sentiment": MODEL["sentiment"]["label"],
    "action": MODEL["action"]["label"],
}
JSON = {"Content-Type": "application/json"}


def post(
    console: ConsoleProc, message_id: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        console.url + f"api/review/feedback/{message_id}", data=data, headers=headers or JSON
    )
    return console._call(req, timeout=20)


def queue_when(
    console: ConsoleProc, ready: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """GET /api/review/queue until ``ready`` says the console has read what it should."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = console.get("api/review/queue")
        assert status == 200, body
        if ready(body):
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"the queue did not get there within {timeout} s: {body}")
        time.sleep(0.2)


def ids(queue: dict[str, Any]) -> list[str]:
    return [item["message_id"] for item in queue["items"]]


def feedback_on(bootstrap: str, topic: str) -> list[tuple[str, Feedback]]:
    return [
        ((key or b"").decode(), Feedback.model_validate_json(value))
        for key, value in read_all(bootstrap, topic)
    ]


def test_a_correction_is_produced_with_the_item_s_version_and_the_agent_s_pseudonym(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = learning_topics(make_topic)
    produce_values(
        pipeline.bootstrap,
        topics["review"],
        [
            ("m-low", review_value("m-low", "where is my refund", priority=0.2)),
            ("m-high", review_value("m-high", "zzq blorp", reason="unfamiliar", priority=0.9)),
            ("m-mid", review_value("m-mid", "card declined", reason="random", priority=0.5)),
        ],
    )
    key_file = tmp_path / "agent.key"
    key_file.write_bytes(KEY + b"\n")
    args = ("--review", "--agent-key-file", str(key_file))
    with console_on(pipeline, tmp_path, *args, topics=topics) as console:
        queue = queue_when(console, lambda q: q["size"] == 3)
        assert ids(queue) == ["m-high", "m-mid", "m-low"]
        high = queue["items"][0]
        assert (high["text"], high["reason"], high["priority"]) == ("zzq blorp", "unfamiliar", 0.9)
        assert high["model"]["version"] == MODEL_VERSION
        assert {h: p["label"] for h, p in high["heads"].items()} == {
            h: p["label"] for h, p in MODEL.items()
        }
        assert queue["agent_keyed"] is True

        before = datetime.now(UTC)
        forged = {"message_id": "m-low", "model_version": "0.0.forged", "agent_id": "ana"}
        body = {"agent": "Ana", "labels": CORRECTED, "reason": "a refund, not billing", **forged}
        status, answer = post(console, "m-high", body)
        assert status == 200, answer
        assert answer["status"] == "sent"

        assert ids(console.get("api/review/queue")[1]) == ["m-mid", "m-low"]
        agreement = console.get("api/review/agreement")[1]

    [(key, fb)] = feedback_on(pipeline.bootstrap, topics["feedback"])
    assert key == fb.message_id == "m-high"
    assert fb.model_version == MODEL_VERSION
    digest = hmac.new(KEY, b"ana", hashlib.sha256).hexdigest()
    assert fb.agent_id == "a-" + digest[:20] == answer["feedback"]["agent_id"]
    assert fb.labels.given() == CORRECTED
    assert (fb.reason, fb.review_reason) == ("a refund, not billing", "unfamiliar")
    assert before - timedelta(seconds=1) <= fb.at <= datetime.now(UTC)
    assert answer["produced"]["partition"] == 0

    [version] = agreement["versions"]
    assert (version["version"], version["n"]) == (MODEL_VERSION, 1)
    rates = {h: (t["agree"], t["n"]) for h, t in version["heads"].items()}
    assert rates == {"intent": (0, 1), "urgency": (1, 1), "sentiment": (1, 1), "action": (1, 1)}


def test_an_invalid_correction_is_refused_and_nothing_is_produced(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = learning_topics(make_topic)
    produce_values(pipeline.bootstrap, topics["review"], [("m-1", review_value("m-1"))])
    with console_on(pipeline, tmp_path, "--review", topics=topics) as console:
        queue_when(console, lambda q: q["size"] == 1)
        good = {"agent": "agent-7", "labels": CORRECTED}
        port = console.url.rstrip("/").rsplit(":", 1)[1]
        refusals = [
            (post(console, "m-1", b"{not json"), 400),
            (post(console, "m-1", [good]), 400),
            (post(console, "m-1", {**good, "labels": {}}), 400),
            (post(console, "m-1", {**good, "labels": {"intent": "fraud_report"}}), 400),
            (post(console, "m-1", {**good, "labels": {"mood": "calm"}}), 400),
            (post(console, "m-1", {**good, "reason": "x" * 501}), 400),
            (post(console, "m-1", {"labels": CORRECTED}), 400),
            # Without --agent-key-file a name is recorded as it is: it must be an opaque id.
            (post(console, "m-1", {**good, "agent": "Ana Lopez"}), 400),
            (post(console, "m-1", {**good, "agent": "ana@example.com"}), 400),
            (post(console, "m-1", good, {"Content-Type": "text/plain"}), 415),
            (post(console, "m-1", good, {**JSON, "Origin": "http://evil.example"}), 403),
            (post(console, "m-1", good, {**JSON, "Host": f"evil.example:{port}"}), 421),
            (post(console, "nobody", good), 404),
        ]
        for (status, body), want in refusals:
            assert status == want, body
            assert body["status"] == "error" and body["error"], body
        assert (
            "labels.intent" in post(console, "m-1", {**good, "labels": {"intent": "x"}})[1]["error"]
        )
        assert read_all(pipeline.bootstrap, topics["feedback"]) == []
        assert queue_when(console, lambda q: True)["size"] == 1

        status, answer = post(console, "m-1", good)
        assert status == 200, answer
        status, again = post(console, "m-1", good)
        assert status == 409, again  # answered: the page drops it

    [(key, fb)] = feedback_on(pipeline.bootstrap, topics["feedback"])
    assert (key, fb.agent_id, fb.model_version) == ("m-1", "agent-7", MODEL_VERSION)


def test_another_agent_s_correction_on_the_topic_takes_the_item_out(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = learning_topics(make_topic)
    review, feedback = topics["review"], topics["feedback"]
    produce_values(
        pipeline.bootstrap,
        review,
        [("m-1", review_value("m-1", priority=0.7)), ("m-2", review_value("m-2", priority=0.6))],
    )
    # A correction of m-3 before its item: read in either order, it keeps m-3 out.
    early = feedback_value("m-3", {"intent": "billing_issue"})
    produce_values(pipeline.bootstrap, topics["feedback"], [("m-3", early)])
    produce_values(pipeline.bootstrap, topics["review"], [("m-3", review_value("m-3"))])
    with console_on(pipeline, tmp_path, "--review", topics=topics) as console:
        read = queue_when(console, lambda q: q["read"] == {**q["read"], review: 3, feedback: 1})
        assert ids(read) == ["m-1", "m-2"]
        other = feedback_value("m-1", {"intent": "general_question", "action": "auto_resolve"})
        produce_values(pipeline.bootstrap, topics["feedback"], [("m-1", other)])
        queue_when(console, lambda q: ids(q) == ["m-2"])
        agreement = console.get("api/review/agreement")[1]
    [version] = agreement["versions"]
    assert version["n"] == 2  # m-3 (agrees on intent) and m-1 (disagrees on both)
    assert version["heads"]["intent"]["agree"] == 1
    assert version["heads"]["intent"]["n"] == 2
    assert version["heads"]["action"] == {"agree": 0, "n": 1, "rate": 0.0, "weighted_rate": 0.0}
    assert [b["n"] for b in agreement["trend"]] == [2]


def test_shadow_results_show_the_candidate_s_agreement(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = learning_topics(make_topic)
    produce_values(
        pipeline.bootstrap,
        topics["shadow"],
        [
            ("s-1", shadow_value("s-1")),
            ("s-2", shadow_value("s-2", {"intent": False, "route": False})),
            ("s-3", b"not a shadow result"),
        ],
    )
    with console_on(pipeline, tmp_path, topics=topics) as console:  # no --review needed
        deadline = time.monotonic() + 30
        while True:
            status, shadow = console.get("api/shadow")
            assert status == 200, shadow
            if shadow["read"] + shadow["unreadable"] == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert (shadow["topic"], shadow["unreadable"]) == (topics["shadow"], 1)
    [c] = shadow["candidates"]
    assert (c["version"], c["n"], c["serving"]) == ("2026.12.01+new", 2, {MODEL_VERSION: 2})
    assert c["agree"]["intent"] == {"agree": 1, "n": 2, "rate": 0.5}
    assert c["agree"]["route"]["rate"] == 0.5
    assert c["agree"]["action"]["rate"] == 1.0


def test_without_review_the_review_endpoints_answer_404(console: ConsoleProc) -> None:
    assert console.get("api/config")[1]["review"] is False
    for path in ("api/review/queue", "api/review/agreement"):
        status, body = console.get(path)
        assert status == 404, path
        assert "--review" in body["error"]
    assert post(console, "m-1", {"agent": "a", "labels": CORRECTED})[0] == 404
    assert console.get("api/shadow")[0] == 200


def test_an_agent_key_too_short_stops_the_console_before_it_listens(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"abc\n")
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "console", "--review", "--agent-key-file", short],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert "--agent-key-file" in proc.stderr and "holds 3 bytes" in proc.stderr
