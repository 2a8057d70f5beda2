"""`make demo`: it notices a dead worker (issue 9, defect 10) or console (issue 12), and
its sample traffic is traced the W3C way (issue 24)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.demo import Child, ChildDiedError, sample_traceparent, watch
from worker.tracing import parse_traceparent


def test_the_view_stops_and_says_so_when_the_worker_dies(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text('{"event": "fatal_kafka_error", "error": "producer fenced"}\n')
    worker = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(4)"])
    worker.wait(30)
    started = time.monotonic()
    console = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    children = [Child("console", console, tmp_path / "console.log"), Child("worker", worker, log)]
    try:
        with pytest.raises(ChildDiedError, match="the worker exited with 4") as exc:
            # an unreachable broker: the view would otherwise wait for an assignment
            watch("127.0.0.1:1", ["a"], "dlq", "in", children)
    finally:
        console.kill()
    assert "producer fenced" in str(exc.value)
    assert time.monotonic() - started < 5


def test_the_sample_traffic_carries_valid_w3c_traceparents() -> None:
    """It was 00-<run><i>-01: no trace to link to or continue (issue 24)."""
    sent = [sample_traceparent().encode() for _ in range(50)]
    contexts = [parse_traceparent(tp) for tp in sent]
    assert all(c is not None and c.flags == 1 for c in contexts)
    assert len({c.trace_id for c in contexts if c}) == 50  # a trace per message
