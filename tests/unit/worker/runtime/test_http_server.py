"""The worker's HTTP server: /metrics, /healthz and /readyz on a free port."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from worker.health import Health
from worker.metrics import Metrics
from worker.runtime.http_server import HttpServer


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, Health]]:
    health = Health(stale_after_s=30.0)
    server = HttpServer("127.0.0.1", 0, Metrics(), health)
    server.start()
    try:
        yield server, health
    finally:
        server.stop()


def get(server: HttpServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, bytes(exc.read())


def test_metrics_are_prometheus_text(served: tuple[HttpServer, Health]) -> None:
    server, _ = served
    code, body = get(server, "/metrics")
    assert code == 200
    assert b"support_messages_in_total" in body


def test_healthz_follows_the_heartbeat(served: tuple[HttpServer, Health]) -> None:
    server, health = served
    assert get(server, "/healthz")[0] == 200
    health.heartbeat -= 60.0  # older than stale_after_s
    code, body = get(server, "/healthz")
    assert (code, body.split()[0]) == (503, b"stale")


def test_readyz_needs_model_transactions_and_subscription(
    served: tuple[HttpServer, Health],
) -> None:
    server, health = served
    assert get(server, "/readyz")[0] == 503
    health.model_ready = health.transactions_ready = True
    assert get(server, "/readyz")[0] == 503
    health.subscribed = True
    code, body = get(server, "/readyz")
    assert (code, body.split()[0]) == (200, b"ready")


def test_other_paths_are_not_found(served: tuple[HttpServer, Health]) -> None:
    server, _ = served
    assert get(server, "/admin")[0] == 404


def test_support_ready_follows_what_readyz_answers(served: tuple[HttpServer, Health]) -> None:
    server, health = served
    health.beat()
    assert b"support_ready 0.0" in get(server, "/metrics")[1]
    health.model_ready = health.transactions_ready = health.subscribed = True
    assert get(server, "/readyz")[0] == 200
    assert b"support_ready 1.0" in get(server, "/metrics")[1]
