"""The console's web app (Starlette): the page, ``POST /api/try`` and the event stream.

- ``POST /api/try`` ``{"text": ...}``: produces a message with a fresh message_id to the
  inbound topic and answers with the result or dead letter a worker committed for it,
  or ``no_answer`` after ``answer_timeout_s`` (with the group's members and lag, so the
  page can say why). A late answer still reaches the page, on the event stream.
- ``GET /api/events``: server-sent events. ``snapshot`` on connect, then ``records``
  (summaries of what was committed, per poll) and ``stats`` (every second).

The Kafka side runs in threads (``tap``); they hand over to this event loop, which alone
touches the ``Hub``. Every request must name an allowed host (DNS rebinding: a foreign
page whose name resolves to 127.0.0.1 sends its own name), and a POST must be JSON from
no foreign origin (a cross-site form cannot send that).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
import structlog
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from schemas.messages import ROUTES
from worker.console import views
from worker.console.hub import ConsoleSettings, Hub
from worker.console.tap import ClientErrors, GroupState, GroupWatch, Submitter, Tap
from worker.settings import WorkerSettings

log = structlog.get_logger("console")

STATIC: Final = Path(__file__).parent / "static"
MAX_BODY_BYTES: Final = 2 * 1024 * 1024
LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})

# The notebook's demo examples (its Gradio page), one click each.
SAMPLES: Final = (
    "Hi, just wondering what my current account balance is? Thanks!",
    "I NEED TO CANCEL MY ORDER RIGHT NOW!!! THIS IS URGENT!!!",
    "WTF!!! You charged me TWICE for the same transaction!! FIX THIS IMMEDIATELY!",
    "hey i cnt log into my acccount... can u halp plz?",
    "What are your business hours?",
    "Ugh, my card was declined AGAIN... this is so frustrating. Can someone help?",
    "i think there might be fraudulent activity on my account. i see charges i didnt make",
    "This is ridiculous! I've been waiting 3 days for my refund!! WHERE IS MY MONEY?!",
)


def allowed_hosts(cs: ConsoleSettings) -> frozenset[str]:
    """Loopback, the bound address unless it is a wildcard, and ``--allowed-host``s."""
    bound = set() if cs.host in ("0.0.0.0", "::", "") else {cs.host.strip("[]").lower()}
    return LOOPBACK | bound | {h.lower() for h in cs.allowed_hosts}


def create_app(cs: ConsoleSettings, ws: WorkerSettings) -> Starlette:
    hub = Hub(cs, ws)
    hosts = allowed_hosts(cs)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def on_records(records: list[views.Committed]) -> None:
            loop.call_soon_threadsafe(take, records)

        def take(records: list[views.Committed]) -> None:
            tap.handoffs.release()
            hub.on_records(records)

        def on_group(group: GroupState) -> None:
            loop.call_soon_threadsafe(hub.on_group, group)

        errors = ClientErrors(ws.kafka)
        tap = Tap(ws, on_records, errors)
        watch = GroupWatch(ws, on_group, errors)
        submitter = Submitter(ws, errors)
        state.update(tap=tap, submitter=submitter)
        # serve.py's server calls this on SIGINT/SIGTERM, before it waits for connections.
        app.state.end_streams = lambda: loop.call_soon_threadsafe(hub.end_streams)
        tap.start()
        watch.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(1)
                hub.tap_error = tap.error
                hub.tap_unreadable = tap.unreadable
                hub.kafka_error = errors.recent()
                hub.publish("stats", hub.stats())

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            hub.end_streams()
            tap.stopping.set()
            watch.stopping.set()
            await asyncio.to_thread(tap.join, 5)
            await asyncio.to_thread(watch.join, 5)
            await asyncio.to_thread(submitter.close)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return _json(
            {
                "samples": SAMPLES,
                "show_live_text": cs.show_live_text,
                "answer_timeout_s": cs.answer_timeout_s,
                "inbound": ws.topics.inbound,
                "group": ws.group_id,
                "routes": {r: ws.topics.for_route(r) for r in ROUTES},
                "dlq": ws.topics.dlq,
            }
        )

    async def try_message(request: Request) -> Response:
        refused = _refuse_post(request, hosts)
        if refused is not None:
            return refused
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "the body is not JSON")
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            return _error(400, 'expected {"text": "..."}')
        tap: Tap = state["tap"]
        if tap.error is not None:
            return _error(503, f"the console cannot read Kafka: {tap.error}")
        if not tap.ready.is_set():
            return _error(503, "the console is still connecting to Kafka; try again")
        mid = f"console-{uuid.uuid4().hex[:16]}"
        value = orjson.dumps(
            {
                "message_id": mid,
                "conversation_id": mid,
                "text": obj["text"],
                "channel": "console",
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            }
        )
        answer = hub.remember(mid)
        delivery = await asyncio.to_thread(state["submitter"].send, mid, value)
        if "error" in delivery:
            hub.waiters.pop(mid, None)
            return _json(
                {"status": "produce_failed", "message_id": mid, "error": delivery["error"]}, 502
            )
        try:
            view = await asyncio.wait_for(asyncio.shield(answer), cs.answer_timeout_s)
        except TimeoutError:
            hub.waiters.pop(mid, None)
            if not answer.done():
                return _json(
                    {
                        "status": "no_answer",
                        "message_id": mid,
                        "waited_s": cs.answer_timeout_s,
                        "produced": delivery,
                        "group": None if hub.group is None else asdict(hub.group),
                    }
                )
            view = answer.result()  # it came in the same step as the timeout
        return _json(
            {"status": view["kind"], "message_id": mid, "produced": delivery, "view": view}
        )

    async def events(request: Request) -> Response:
        q = hub.subscribe()
        if q is None:
            return _error(503, "too many open event streams, or shutting down")

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(q.get(), 15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    yield item
            finally:
                hub.subscribers.discard(q)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def healthz(request: Request) -> Response:
        tap: Tap = state["tap"]
        ok = tap.ready.is_set() and tap.error is None
        return _json({"ok": ok, "tap_error": tap.error}, 200 if ok else 503)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/config", config),
            Route("/api/try", try_message, methods=["POST"]),
            Route("/api/events", events),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(AllowedHosts, hosts=hosts)],
        lifespan=lifespan,
    )


class AllowedHosts:
    """Refuses a request whose Host header names no allowed host (421), on every path."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            if _hostname(host) not in self.hosts:
                refusal = _error(421, "unknown Host: start the console with --allowed-host NAME")
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _hostname(netloc: str) -> str:
    try:
        return (urlsplit("//" + netloc).hostname or "").lower()
    except ValueError:  # an unbalanced IPv6 bracket, say
        return ""


def _refuse_post(request: Request, hosts: frozenset[str]) -> Response | None:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "send application/json")
    origin = request.headers.get("origin")
    if origin is not None and _hostname(urlsplit(origin).netloc) not in hosts:
        return _error(403, "cross-origin request refused")
    return None


def _json(data: Any, status: int = 200) -> Response:
    """orjson: NaN and infinities become null; an unencodable answer is a 500 that says so."""
    try:
        body = orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError) as exc:
        body = orjson.dumps({"status": "error", "error": f"unencodable result: {exc}"})
        status = 500
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"status": "error", "error": message}, status)
