"""The worker's HTTP server on the admin port: /metrics (Prometheus), /healthz (loop heartbeat),
/readyz. Not Kafka's admin client: that is ``worker.ops.topics_kafka``."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.health import Health
from worker.metrics import Metrics


class HttpServer:
    def __init__(self, host: str, port: int, metrics: Metrics, health: Health) -> None:
        metrics.track_readiness(health.ready)  # support_ready: what /readyz answers, per scrape
        handler = _handler(metrics, health)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="http-server", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = health.live()
                self._send(
                    200 if ok else 503, (b"ok " if ok else b"stale ") + health.describe().encode()
                )
            elif self.path == "/readyz":
                ok = health.ready()
                self._send(
                    200 if ok else 503,
                    (b"ready " if ok else b"not ready ") + health.describe().encode(),
                )
            else:
                self._send(404, b"not found")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass  # probes every few seconds would drown the JSON log

    return Handler
