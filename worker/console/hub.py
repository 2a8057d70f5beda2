"""What the page sees, kept on the event loop: the live window, the tries waiting for an
answer, and the event-stream subscribers. Only the loop's thread touches it (the Kafka
threads hand over through ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from schemas.messages import ROUTES
from worker.console import views
from worker.console.tap import GroupState
from worker.console.window import Window
from worker.settings import WorkerSettings

log = structlog.get_logger("console")

MAX_OWN_IDS: Final = 10_000
QUEUE_EVENTS: Final = 256  # a subscriber this far behind is dropped; EventSource reconnects
MAX_SUBSCRIBERS: Final = 64

Stream = asyncio.Queue[bytes | None]  # encoded events; None ends the stream


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's own switches (Kafka, topics and group come from WorkerSettings)."""

    host: str = "127.0.0.1"
    port: int = 8080
    show_live_text: bool = False  # live traffic's text on the page (privacy: off)
    answer_timeout_s: float = 10.0
    recent: int = 20
    window_s: int = 300
    allowed_hosts: tuple[str, ...] = ()  # Host/Origin names beyond loopback and --host
    review: bool = False  # the review page: queued messages with their text, corrections
    agent_key_file: Path | None = None  # the key of agents' pseudonyms (agents.Pseudonyms)
    # Access (auth/): a standalone login, an OIDC proxy's headers, or neither (loopback).
    users_file: Path | None = None  # name:role:argon2-hash lines
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-* are believed
    proxy_roles_file: Path | None = None  # TOML: proxy users, e-mails and groups -> roles
    session_key_file: Path | None = None  # signs the session cookies; none: a random key
    certfile: Path | None = None  # HTTPS with keyfile; the session cookie is Secure then
    keyfile: Path | None = None


class Hub:
    def __init__(self, cs: ConsoleSettings, ws: WorkerSettings) -> None:
        self.cs = cs
        self.route_of_topic = {ws.topics.for_route(r): r for r in ROUTES}
        self.dlq = ws.topics.dlq
        self.window = Window(cs.window_s, cs.recent)
        self.own: OrderedDict[str, None] = OrderedDict()  # ids this console produced
        self.waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.subscribers: set[Stream] = set()
        self.textless: set[Stream] = set()  # streams that must carry no customer text
        self.closing = False
        self.group: GroupState | None = None
        self.tap_error: str | None = None  # the tap stopped: the page is no longer live
        self.kafka_error: str | None = None  # a client's latest error, while it is recent
        self.tap_unreadable = 0  # records the tap could not even read

    # -- tries ---------------------------------------------------------------------------

    def remember(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        """Registers a try before its message is produced, so no answer can come first."""
        self.own[message_id] = None
        while len(self.own) > MAX_OWN_IDS:
            self.own.popitem(last=False)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[message_id] = fut
        return fut

    # -- what the tap read ---------------------------------------------------------------

    def on_records(self, records: list[views.SeenRecord]) -> None:
        now = time.time()
        out = []
        for rec in records:
            try:
                summary = self._one(rec, now)
            except Exception as exc:  # noqa: BLE001 - untrusted bytes: count, never stop
                self.window.unreadable += 1
                log.warning("console_record_unreadable", error=f"{type(exc).__name__}: {exc}")
                continue
            if summary is not None:
                out.append(summary)
        if out:
            self.publish("records", out)

    def _one(self, rec: views.SeenRecord, now: float) -> dict[str, Any] | None:
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
            return None
        if own and mid is not None:
            fut = self.waiters.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(view)
            summary = {**summary, "own": True, "view": view}
        return summary

    def on_group(self, state: GroupState) -> None:
        self.group = state

    # -- what the page gets --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = time.time()
        return {
            "series": self.window.series(now),
            "low_confidence": self.window.low_confidence(now),
            "group": None if self.group is None else asdict(self.group),
            "unreadable": self.window.unreadable + self.tap_unreadable,
            "tap_error": self.tap_error,
            "kafka_error": self.kafka_error,
        }

    def subscribe(self, *, text: bool = True) -> Stream | None:
        """A new stream, its first event the snapshot: taken in the same step as joining,
        so no record is in both. ``text`` False: a stream without any customer text (a
        viewer's, an agent's). None when full or closing."""
        if self.closing or len(self.subscribers) >= MAX_SUBSCRIBERS:
            return None
        q: Stream = asyncio.Queue(QUEUE_EVENTS)
        snapshot = {
            **self.stats(),
            "escalations": list(self.window.escalations),
            "dead_letters": list(self.window.dead_letters),
        }
        if not text:
            snapshot["escalations"] = [textless(s) for s in snapshot["escalations"]]
            snapshot["dead_letters"] = [textless(s) for s in snapshot["dead_letters"]]
            self.textless.add(q)
        q.put_nowait(encode("snapshot", snapshot))
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: Stream) -> None:
        self.subscribers.discard(q)
        self.textless.discard(q)

    def publish(self, event: str, data: Any) -> None:
        try:
            payload = encode(event, data)
            # Encoded once more only when a textless stream is open and there is text.
            bare = payload
            if event == "records" and self.textless:
                bare = encode(event, [textless(s) for s in data])
        except (TypeError, orjson.JSONEncodeError) as exc:  # e.g. an integer over 64 bits
            log.warning("console_event_unencodable", event_name=event, error=str(exc))
            return
        for q in list(self.subscribers):
            try:
                q.put_nowait(bare if q in self.textless else payload)
            except asyncio.QueueFull:  # too slow a reader: end its stream, it reconnects
                self._end(q)

    def end_streams(self) -> None:
        """Ends every stream now (shutdown): the server need not wait for them."""
        self.closing = True
        for q in list(self.subscribers):
            self._end(q)

    def _end(self, q: Stream) -> None:
        self.unsubscribe(q)
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            q.put_nowait(None)


def textless(summary: dict[str, Any]) -> dict[str, Any]:
    """A streamed summary for a stream without text: no text, no dead-letter reason (it
    can quote the message), no full view, and not marked as a try of this page's."""
    out = {k: v for k, v in summary.items() if k not in ("view", "own")}
    out.update(text=None, text_hidden=True)
    if out.get("kind") == "dead_letter":
        out["reason"] = None
    return out


def encode(event: str, data: Any) -> bytes:
    """One server-sent event. orjson writes NaN and infinities as null."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
