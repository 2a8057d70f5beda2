"""`make demo` notices a dead worker (issue 9, defect 10) or console (issue 12)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.demo import Child, ChildDiedError, watch


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
