"""The worker-process driver the bench and the integration tests share, without a broker."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import worker_proc
from tools.worker_proc import WorkerProc, WorkerProcError

METRICS = b"""# HELP support_messages_out_total results committed
support_messages_out_total{route="escalate"} 3.0
support_messages_out_total{route="more_info"} 4.0
support_messages_out_total_created{route="escalate"} 1.7e+09
support_dead_letters_total 2.0
"""


def test_env_settings_override_defaults_and_extra_env_overrides_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPPORT_WORKER_MODE", "from-the-shell")  # never leaks in
    env = worker_proc.worker_env(
        "b:9092",
        {"inbound": "in.1", "dlq": "dlq.1"},
        Path("/m"),
        group="g",
        txn_id="t",
        settings={"log_level": "debug", "model__threads": "1"},
        extra_env={"SUPPORT_WORKER_MODEL__THREADS": "2"},
    )
    ours = {k: v for k, v in env.items() if k.startswith("SUPPORT_WORKER_")}
    assert ours == {
        "SUPPORT_WORKER_TOPICS__INBOUND": "in.1",
        "SUPPORT_WORKER_TOPICS__DLQ": "dlq.1",
        "SUPPORT_WORKER_MODEL__PATH": "/m",
        "SUPPORT_WORKER_GROUP_ID": "g",
        "SUPPORT_WORKER_TRANSACTIONAL_ID": "t",
        "SUPPORT_WORKER_ADMIN_PORT": "0",
        "SUPPORT_WORKER_LOG_LEVEL": "debug",
        "SUPPORT_WORKER_MODEL__THREADS": "2",
    }
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "b:9092"


@pytest.fixture
def admin() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = METRICS if self.path == "/metrics" else b"ok"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_port_from_the_log_then_ready_and_metrics_from_one_scrape(
    admin: int, tmp_path: Path
) -> None:
    log = tmp_path / "w.log"
    log.write_text(f"not json\n{json.dumps({'event': 'admin_listening', 'port': admin})}\n")
    w = WorkerProc(sleeper(), log)
    try:
        w.wait_ready(timeout=10)
        assert w.admin_port == admin
        assert w.metrics("support_messages_out_total", "support_dead_letters_total") == [7, 2]
        assert w.committed() == 9  # results and dead letters; the _created series is no count
        assert w.wait_committed(9, timeout=5)[0] == 9
    finally:
        w.kill()
    assert w.proc.poll() is not None


def test_a_dead_worker_fails_the_wait_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text('{"event": "fatal_kafka_error", "error": "producer fenced"}\n')
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait(30)
    w = WorkerProc(proc, log)
    with pytest.raises(AssertionError, match="exited 3") as exc:  # tests/chaos catches these
        w.wait_ready(timeout=10)
    assert isinstance(exc.value, WorkerProcError) and "producer fenced" in str(exc.value)
    with pytest.raises(WorkerProcError, match="exited 3"):
        w.wait_committed(1, timeout=10)
