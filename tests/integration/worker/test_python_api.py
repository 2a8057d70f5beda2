"""The Python API and ``support-worker score`` give what the worker publishes on Kafka.

The same inbound values go to a worker on the real broker, to ``Router.route_records``
and, as lines of a file, to ``support-worker score``. Each message's result agrees on
everything but where and when it was routed (``tests.results.same_result``), and each bad
value is dead-lettered for the same stage, type and reason on all three paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas import messages as m
from tests.conftest import REPO
from tests.integration.worker.harness import (
    MALFORMED,
    make_topics,
    message,
    read_committed,
    running_worker,
)
from tests.results import PROBABILITY_TOLERANCE, same_result
from worker import codec
from worker.router import Router
from worker.settings import WorkerSettings

N = 240
BAD_EVERY = 20


def _values() -> list[bytes]:
    """Inbound values: messages of harness.message, every BAD_EVERY-th one malformed."""
    return [
        MALFORMED[i % len(MALFORMED)]
        if i % BAD_EVERY == BAD_EVERY - 1
        else json.dumps(message(i)).encode()
        for i in range(N)
    ]


def _why(stage: bytes | str, kind: bytes | str, reason: bytes | str) -> tuple[str, str, str]:
    as_text = [x.decode() if isinstance(x, bytes) else x for x in (stage, kind, reason)]
    return as_text[0], as_text[1], as_text[2]


# The worker's own batches (floats to tolerance: each path pads its batches to their own
# longest text), and batches of one message on one thread everywhere: bit for bit.
MODES = {
    "worker_batches": ({}, PROBABILITY_TOLERANCE),
    "one_by_one": ({"BATCHING__MAX_BATCH_SIZE": "1", "MODEL__THREADS": "1"}, 0.0),
}


@pytest.mark.parametrize("mode", MODES)
def test_router_and_score_return_what_the_worker_publishes(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    smoke_artifact: Path,
    tmp_path: Path,
    mode: str,
) -> None:
    settings, tolerance = MODES[mode]
    values = _values()
    bad = {i for i in range(N) if i % BAD_EVERY == BAD_EVERY - 1}
    topics = make_topics(make_topic, partitions=2)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i, v in enumerate(values):
        p.produce(topics.inbound, key=f"bad-{i}".encode() if i in bad else None, value=v)
    assert p.flush(30) == 0

    with running_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path, **settings):
        got = read_committed(kafka_bootstrap, topics, N)
    published = {v["message_id"]: v for _, v, _ in got.results}
    assert len(published) == N - len(bad) == len(got.results)
    published_dead = {
        int(k.removeprefix("bad-")): _why(h[m.HEADER_STAGE], h[m.HEADER_TYPE], h[m.HEADER_MESSAGE])
        for k, h in got.dead
    }
    assert set(published_dead) == bad

    # The Python API, on records holding the same values.
    nested: dict[str, dict[str, str]] = {}
    for key, value in settings.items():
        group, name = key.lower().split("__")
        nested.setdefault(group, {})[name] = value
    router = Router.load(smoke_artifact, WorkerSettings.model_validate(nested))
    records = [codec.Record("api", 0, i, None, v, [], None) for i, v in enumerate(values)]
    api = router.route_records(records)
    api_results = {}
    for i, out in enumerate(api):
        if out.is_dead_letter:
            h = dict(out.headers)
            assert (
                _why(h[m.HEADER_STAGE], h[m.HEADER_TYPE], h[m.HEADER_MESSAGE])
                == (published_dead[i])
            )
        else:
            value = json.loads(out.value or b"")
            api_results[value["message_id"]] = value
    assert api_results.keys() == published.keys()
    differ = [k for k, v in api_results.items() if not same_result(v, published[k], tolerance)]
    assert differ == [], f"{len(differ)} differ, e.g. {api_results[differ[0]]}"

    # support-worker score, on a file of the same values as lines.
    src, out_file = tmp_path / "inbound.jsonl", tmp_path / "routed.jsonl"
    src.write_bytes(b"\n".join(values) + b"\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "score",
            "--in",
            str(src),
            "--out",
            str(out_file),
            "--model",
            str(smoke_artifact),
            "--no-progress",
        ],
        cwd=REPO,
        env={**os.environ, **{f"SUPPORT_WORKER_{k}": v for k, v in settings.items()}},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["routed"], summary["dead_letters"]) == (N - len(bad), len(bad))
    scored = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert [v["message_id"] for v in scored] == [f"m{i}" for i in range(N) if i not in bad]
    differ = [
        v["message_id"] for v in scored if not same_result(v, published[v["message_id"]], tolerance)
    ]
    assert differ == [], f"{len(differ)} differ"
    dead_lines = [
        json.loads(x) for x in Path(summary["dead_letters_file"]).read_text().splitlines()
    ]
    assert {
        d["line"] - 1: _why(d["stage"], d["error_type"], d["reason"]) for d in dead_lines
    } == published_dead
