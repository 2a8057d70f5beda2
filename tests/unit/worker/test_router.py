"""The Python API routes texts and records exactly as the worker's loop would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schemas.messages import OutboundMessage
from tests.conftest import REPO
from worker import codec
from worker.router import Router
from worker.settings import WorkerSettings


def test_texts_become_the_outbound_messages_the_worker_publishes(smoke_artifact: Path) -> None:
    router = Router.load(smoke_artifact, WorkerSettings())
    routed = router.route(["my card was declined at the store", ""])
    topics = WorkerSettings().topics
    for r in routed:
        assert not r.dead_letter and r.result is not None
        assert OutboundMessage.model_validate(r.value) == r.result
        assert r.topic == getattr(topics, r.result.route)
    assert [r.result.message_id for r in routed if r.result] == ["text-0", "text-1"]
    empty = routed[1].result
    assert empty is not None and empty.routing.reason == "empty_text"
    assert empty.model.content_hash == router.model.model_info["content_hash"]


def test_a_record_the_worker_would_dead_letter_is_a_dead_letter(smoke_artifact: Path) -> None:
    router = Router.load(smoke_artifact, WorkerSettings())
    bad = codec.Record("in", 3, 7, b"k", b"not json", [], None)
    [out] = router.route_records([bad])
    assert out.is_dead_letter and out.topic == WorkerSettings().topics.dlq
    assert out.value == b"not json" and out.stage == "decode"
    assert router.route_records([]) == []


def test_importing_the_python_api_loads_no_loop_no_kafka_and_no_model_runtime() -> None:
    heavy = ("torch", "transformers", "confluent_kafka", "prometheus_client", "onnxruntime")
    code = (
        "import sys, worker.router\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}"
        " or m in ('worker.service', 'worker.pipeline', 'worker.metrics')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
