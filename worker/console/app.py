"""The console's web app (Starlette): the page, ``POST /api/try`` and the event stream.

- ``POST /api/try`` ``{"text": ...}``: produces a message with a fresh message_id to the
  inbound topic and answers with the result or dead letter a worker committed for it,
  or ``no_answer`` after ``answer_timeout_s`` (with the group's members and lag, so the
  page can say why). A late answer still reaches the page, on the event stream.
- ``GET /api/events``: server-sent events. ``snapshot`` on connect, then ``records``
  (summaries of what was committed, per poll) and ``stats`` (every second).

The Kafka side runs in a thread (``tap.Tap``); it hands each poll's records to this
event loop, which alone touches the ``Hub``'s state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas.messages import ROUTES
from worker.console import views
from worker.console.tap import ClientErrors, GroupState, GroupWatch, Submitter, Tap
from worker.console.window import Window
from worker.settings import WorkerSettings

STATIC: Final = Path(__file__).parent / "static"
MAX_BODY_BYTES: Final = 2 * 1024 * 1024
MAX_OWN_IDS: Final = 10_000
QUEUE_EVENTS: Final = 256  # a subscriber this far behind is dropped; EventSource reconnects

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


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's own switches (Kafka, topics and group come from WorkerSettings)."""

    host: str = "127.0.0.1"
    port: int = 8080
    show_live_text: bool = False  # live traffic's text on the page (privacy: off)
    answer_timeout_s: float = 10.0
    recent: int = 20
    window_s: int = 300


class Hub:
    """What the page sees: the live window, pending tries, and the event subscribers."""

    def __init__(self, cs: ConsoleSettings, ws: WorkerSettings) -> None:
        self.cs = cs
        self.route_of_topic = {ws.topics.for_route(r): r for r in ROUTES}
        self.dlq = ws.topics.dlq
        self.window = Window(cs.window_s, cs.recent)
        self.own: OrderedDict[str, None] = OrderedDict()  # ids this console produced
        self.waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.subscribers: set[asyncio.Queue[tuple[str, Any] | None]] = set()
        self.group: GroupState | None = None
        self.tap_error: str | None = None  # the tap stopped: the page is no longer live
        self.kafka_error: str | None = None  # a client's latest error, while it is recent

    def remember(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        self.own[message_id] = None
        while len(self.own) > MAX_OWN_IDS:
            self.own.popitem(last=False)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[message_id] = fut
        return fut

    def on_records(self, records: list[views.Committed]) -> None:
        now = time.time()
        out = []
        for rec in records:
            if rec.topic == self.dlq:
                view = views.dead_letter(rec)
            else:
                view = views.routed(rec, self.route_of_topic)
            mid: str | None = view.get("message_id")
            own = mid is not None and mid in self.own
            if not (own or self.cs.show_live_text):
                view = views.without_text(view)
            summary = views.summary(view)
            self.window.add(view, summary, now)
            if view["kind"] == "unreadable":
                continue
            if own and mid is not None:
                fut = self.waiters.pop(mid, None)
                if fut is not None and not fut.done():
                    fut.set_result(view)
                summary = {**summary, "own": True, "view": view}
            out.append(summary)
        if out:
            self.publish("records", out)

    def on_group(self, state: GroupState) -> None:
        self.group = state

    def stats(self) -> dict[str, Any]:
        now = time.time()
        return {
            "series": self.window.series(now),
            "low_confidence": self.window.low_confidence(now),
            "group": None if self.group is None else asdict(self.group),
            "unreadable": self.window.unreadable,
            "tap_error": self.tap_error,
            "kafka_error": self.kafka_error,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats(),
            "escalations": list(self.window.escalations),
            "dead_letters": list(self.window.dead_letters),
        }

    def subscribe(self) -> asyncio.Queue[tuple[str, Any] | None]:
        q: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue(QUEUE_EVENTS)
        self.subscribers.add(q)
        return q

    def publish(self, event: str, data: Any) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait((event, data))
            except asyncio.QueueFull:  # too slow a reader: end its stream, it reconnects
                self.subscribers.discard(q)
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                q.put_nowait(None)


def create_app(cs: ConsoleSettings, ws: WorkerSettings) -> Starlette:
    hub = Hub(cs, ws)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def on_records(records: list[views.Committed]) -> None:
            loop.call_soon_threadsafe(hub.on_records, records)

        def on_group(group: GroupState) -> None:
            loop.call_soon_threadsafe(hub.on_group, group)

        errors = ClientErrors(ws.kafka)
        tap = Tap(ws, on_records, errors)
        watch = GroupWatch(ws, on_group, errors)
        submitter = Submitter(ws, errors)
        state.update(tap=tap, submitter=submitter)
        tap.start()
        watch.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(1)
                hub.tap_error = tap.error
                hub.kafka_error = errors.recent()
                hub.publish("stats", hub.stats())

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            for q in list(hub.subscribers):
                q.put_nowait(None)
            tap.stopping.set()
            watch.stopping.set()
            await asyncio.to_thread(tap.join, 5)
            await asyncio.to_thread(watch.join, 5)
            await asyncio.to_thread(submitter.close)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse(
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
        refused = _refuse(request)
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
            return JSONResponse(
                {"status": "produce_failed", "message_id": mid, "error": delivery["error"]},
                status_code=502,
            )
        try:
            view = await asyncio.wait_for(asyncio.shield(answer), cs.answer_timeout_s)
        except TimeoutError:
            hub.waiters.pop(mid, None)
            return JSONResponse(
                {
                    "status": "no_answer",
                    "message_id": mid,
                    "waited_s": cs.answer_timeout_s,
                    "produced": delivery,
                    "group": None if hub.group is None else asdict(hub.group),
                }
            )
        return JSONResponse(
            {"status": view["kind"], "message_id": mid, "produced": delivery, "view": view}
        )

    async def events(request: Request) -> Response:
        q = hub.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield _sse("snapshot", hub.snapshot())
                while True:
                    try:
                        item = await asyncio.wait_for(q.get(), 15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    yield _sse(*item)
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
        return JSONResponse({"ok": ok, "tap_error": tap.error}, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/config", config),
            Route("/api/try", try_message, methods=["POST"]),
            Route("/api/events", events),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )


def _refuse(request: Request) -> Response | None:
    """Only the page's own requests: JSON (a cross-site form cannot send it without a
    preflight, which this app never grants), and no foreign Origin."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "send application/json")
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return _error(403, "cross-origin request refused")
    return None


def _error(status: int, message: str) -> Response:
    return JSONResponse({"status": "error", "error": message}, status_code=status)


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
