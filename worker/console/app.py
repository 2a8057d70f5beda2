"""The console's web app (Starlette): the page, ``POST /api/try``, the event stream, and
the review and shadow endpoints (``review_api``).

- ``POST /api/try`` ``{"text": ...}``: produces a message with a fresh message_id to the
  inbound topic and answers with the result or dead letter a worker committed for it,
  or ``no_answer`` after ``answer_timeout_s`` (with the group's members and lag, so the
  page can say why). A late answer still reaches the page, on the event stream.
- ``GET /api/events``: server-sent events. ``snapshot`` on connect, then ``records``
  (summaries of what was committed, per poll) and ``stats`` (every second).

The Kafka side runs in threads (``tap``: the live tap, the learning tap); they hand over
to this event loop, which alone touches the ``Hub`` and the ``Learning``. Every request
must name an allowed host and every POST is JSON from no foreign origin (``web``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas.labels import HEADS
from schemas.learning import AGENT_ID_PATTERN
from schemas.messages import ROUTES
from worker.console import review_api, views
from worker.console.agents import Pseudonyms
from worker.console.auth.audit import audit
from worker.console.auth.gate import Gate
from worker.console.auth.roles import Role
from worker.console.hub import ConsoleSettings, Hub
from worker.console.learning import Learning
from worker.console.tap import ConsoleErrors, GroupState, GroupWatch, Submitter, Tap, live_topics
from worker.console.web import AllowedHosts, error, json_body, json_response, refuse_post
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
    """The app; ConfigError when a setting cannot be used (an unreadable agent key)."""
    hub = Hub(cs, ws)
    learning = Learning(ws.topics, cs.review)
    pseudonyms = Pseudonyms.from_file(cs.agent_key_file)
    gate = Gate(cs, pseudonyms)
    hosts = allowed_hosts(cs)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        # From the taps' threads: each batch goes to the loop, whose taking it lets the tap
        # hand over one more.
        def on_live(records: list[views.SeenRecord]) -> None:
            loop.call_soon_threadsafe(take, tap, hub.on_records, records)

        def on_learned(records: list[views.SeenRecord]) -> None:
            loop.call_soon_threadsafe(take, learning_tap, learning.on_records, records)

        def take(
            source: Tap,
            receiver: Callable[[list[views.SeenRecord]], None],
            records: list[views.SeenRecord],
        ) -> None:
            source.handoffs.release()
            receiver(records)

        def on_group(group: GroupState) -> None:
            loop.call_soon_threadsafe(hub.on_group, group)

        errors = ConsoleErrors(ws.kafka)
        tap = Tap(ws, live_topics(ws), on_live, errors)
        learning_tap = Tap(
            ws, learning.topics(), on_learned, errors, replay_s=None, name="console-learning"
        )
        watch = GroupWatch(ws, on_group, errors)
        submitter = Submitter(ws, errors)
        state.update(tap=tap, learning_tap=learning_tap, submitter=submitter)
        # serve.py's server calls this on SIGINT/SIGTERM, before it waits for connections.
        app.state.end_streams = lambda: loop.call_soon_threadsafe(hub.end_streams)
        threads = (tap, learning_tap, watch)
        for thread in threads:
            thread.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(1)
                hub.tap_error = tap.error
                hub.tap_unreadable = tap.unreadable
                hub.kafka_error = errors.recent()
                learning.tap_error = learning_tap.error
                hub.publish("stats", hub.stats())

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            hub.end_streams()
            for thread in threads:
                thread.stopping.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, 5)
            await asyncio.to_thread(submitter.close)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        who = gate.check(request, Role.VIEWER)
        if isinstance(who, Response):
            return who
        return json_response(
            {
                "samples": SAMPLES,
                "show_live_text": cs.show_live_text and who.may(Role.OPERATOR),
                "answer_timeout_s": cs.answer_timeout_s,
                "inbound": ws.topics.inbound,
                "group": ws.group_id,
                "routes": {r: ws.topics.for_route(r) for r in ROUTES},
                "dlq": ws.topics.dlq,
                "review": cs.review,
                # Without a key the name is the id: the page checks it before it is kept.
                "agent_keyed": pseudonyms.keyed,
                "agent_id_pattern": AGENT_ID_PATTERN,
                "learning_topics": {
                    "review": ws.topics.review,
                    "feedback": ws.topics.feedback,
                    "shadow": ws.topics.shadow,
                },
                "heads": HEADS,
            }
        )

    async def try_message(request: Request) -> Response:
        refused = refuse_post(request, hosts)
        if refused is not None:
            return refused
        who = gate.check(request, Role.OPERATOR, post=True)
        if isinstance(who, Response):
            return who
        obj = await json_body(request, MAX_BODY_BYTES)
        if isinstance(obj, Response):
            return obj
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            return error(400, 'expected {"text": "..."}')
        tap: Tap = state["tap"]
        if tap.error is not None:
            return error(503, f"the console cannot read Kafka: {tap.error}")
        if not tap.ready.is_set():
            return error(503, "the console is still connecting to Kafka; try again")
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
        if who.user is not None:
            audit("message_tried", gate.audit_name(who), message_id=mid)
        delivery = await asyncio.to_thread(state["submitter"].send, ws.topics.inbound, mid, value)
        if "error" in delivery:
            hub.waiters.pop(mid, None)
            return json_response(
                {"status": "produce_failed", "message_id": mid, "error": delivery["error"]}, 502
            )
        try:
            view = await asyncio.wait_for(asyncio.shield(answer), cs.answer_timeout_s)
        except TimeoutError:
            hub.waiters.pop(mid, None)
            if not answer.done():
                return json_response(
                    {
                        "status": "no_answer",
                        "message_id": mid,
                        "waited_s": cs.answer_timeout_s,
                        "produced": delivery,
                        "group": None if hub.group is None else asdict(hub.group),
                    }
                )
            view = answer.result()  # it came in the same step as the timeout
        return json_response(
            {"status": view["kind"], "message_id": mid, "produced": delivery, "view": view}
        )

    async def events(request: Request) -> Response:
        who = gate.check(request, Role.VIEWER)
        if isinstance(who, Response):
            return who
        # Text (this console's tries; live traffic's with --show-live-text) goes to
        # operators only: a viewer's or an agent's stream has none.
        q = hub.subscribe(text=who.may(Role.OPERATOR))
        if q is not None and who.user is not None and cs.show_live_text and who.may(Role.OPERATOR):
            audit("live_text_opened", gate.audit_name(who))
        if q is None:
            return error(503, "too many open event streams, or shutting down")

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
                hub.unsubscribe(q)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def healthz(request: Request) -> Response:
        tap: Tap = state["tap"]
        learning_tap: Tap = state["learning_tap"]
        ok = tap.ready.is_set() and tap.error is None and learning_tap.error is None
        return json_response(
            {"ok": ok, "tap_error": tap.error, "learning_tap_error": learning_tap.error},
            200 if ok else 503,
        )

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/config", config),
            Route("/api/try", try_message, methods=["POST"]),
            Route("/api/events", events),
            Route("/healthz", healthz),
            *gate.routes(hosts),
            *review_api.routes(
                cs.review, ws, learning, pseudonyms, lambda: state["submitter"], hosts, gate
            ),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(AllowedHosts, hosts=hosts)],
        lifespan=lifespan,
    )
    app.state.access_mode = gate.mode
    return app
