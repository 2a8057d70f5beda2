"""Runs the console: binds its socket (so port 0 works and the URL is known before the
first request), announces the URL, and serves until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import socket
from types import FrameType

import structlog
import uvicorn
from starlette.applications import Starlette

from worker.console.app import create_app
from worker.console.hub import ConsoleSettings
from worker.errors import ConfigError
from worker.settings import WorkerSettings

log = structlog.get_logger("console")


class ConsoleServer(uvicorn.Server):
    """Ends the open event streams when the stop signal comes, before uvicorn waits for
    its connections to close: else a page left open holds every stop for the grace
    period and then has its stream cancelled with a traceback in the log."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        end_streams = getattr(self.app.state, "end_streams", None)
        if end_streams is not None:
            end_streams()  # loop.call_soon_threadsafe: safe from a signal handler
        super().handle_exit(sig, frame)


def run(cs: ConsoleSettings, ws: WorkerSettings) -> int:
    app = create_app(cs, ws)  # first: a setting it cannot use stops it before it listens
    family = socket.AF_INET6 if ":" in cs.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cs.host, cs.port))
    except OSError as exc:  # in use, or not an address of this host
        sock.close()
        raise ConfigError(f"the console cannot listen on {cs.host}:{cs.port}: {exc}") from exc
    sock.listen(128)
    port = sock.getsockname()[1]
    host = f"[{cs.host}]" if family == socket.AF_INET6 else cs.host
    url = f"{'https' if cs.certfile else 'http'}://{host}:{port}/"
    log.info(
        "console_listening",
        url=url,
        port=port,
        inbound=ws.topics.inbound,
        group=ws.group_id,
        show_live_text=cs.show_live_text,
        review=cs.review,
        agent_ids="keyed hash" if cs.agent_key_file is not None else "as given",
        access=app.state.access_mode,
        trusted_proxies=list(cs.trusted_proxies),
        tls=cs.certfile is not None,
    )
    print(f"support-worker console: {url}", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # The streams are ended on the signal (ConsoleServer); anything else gets a second.
        timeout_graceful_shutdown=1,
        # The peer address is the socket's: it decides whose X-Forwarded-User is believed
        # (auth.proxy), so no X-Forwarded-For may rewrite it.
        proxy_headers=False,
        ssl_certfile=cs.certfile,
        ssl_keyfile=cs.keyfile,
    )
    # uvicorn handles SIGINT/SIGTERM while it serves, then restores the handlers it found
    # and raises the signal again; these make that second delivery a no-op, so a stop is
    # a clean exit 0 as for the worker, not a death by signal.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda signum, frame: None)
    ConsoleServer(config, app).run(sockets=[sock])
    log.info("console_stopped")
    return 0
