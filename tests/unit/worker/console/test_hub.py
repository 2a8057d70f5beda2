from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.unit.worker.console.records import dead, routed
from worker.console.hub import MAX_SUBSCRIBERS, QUEUE_EVENTS, ConsoleSettings, Hub, Stream
from worker.console.views import SeenRecord
from worker.settings import TopicNames, WorkerSettings

TOPICS = TopicNames(escalate="r.escalate", auto_resolve="r.auto", more_info="r.more", dlq="r.dlq")


def hub(show_live_text: bool = False) -> Hub:
    ws = WorkerSettings(topics=TOPICS)
    return Hub(ConsoleSettings(show_live_text=show_live_text), ws)


def events(q: Stream | None) -> list[Any]:
    """Decoded events waiting in a stream (its end: None), after the snapshot."""
    assert q is not None
    out: list[Any] = []
    while not q.empty():
        raw = q.get_nowait()
        if raw is None:
            out.append(None)
            continue
        head, data = raw.decode().rstrip("\n").split("\n")
        out.append((head.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return [e for e in out if e is None or e[0] != "snapshot"]


def test_the_console_s_own_message_resolves_its_try_with_text_others_come_without() -> None:
    async def go() -> None:
        h = hub()
        q = h.subscribe()
        answer = h.remember("own-1")
        h.on_records([routed("other-1", "private words"), routed("own-1", "my own words")])
        view = await asyncio.wait_for(answer, 1)
        assert view["message_id"] == "own-1"
        assert view["text"] == "my own words"
        assert "own-1" not in h.waiters
        [(event, records)] = events(q)
        assert event == "records"
        other, own = records
        assert (other["message_id"], other["text"], other.get("own")) == ("other-1", None, None)
        assert other["text_hidden"] is True
        assert (own["own"], own["view"]["text"]) == (True, "my own words")
        assert [s["message_id"] for s in h.window.escalations] == ["own-1", "other-1"]

    asyncio.run(go())


def test_show_live_text_shows_everyone_s_text() -> None:
    async def go() -> None:
        h = hub(show_live_text=True)
        q = h.subscribe()
        h.on_records([routed("other-1", "visible words")])
        [(_, [record])] = events(q)
        assert record["text"] == "visible words"

    asyncio.run(go())


def test_a_dead_letter_answers_its_try() -> None:
    async def go() -> None:
        h = hub()
        answer = h.remember("own-2")
        h.on_records([dead(b'{"message_id": "own-2", "text": "much too long"}')])
        view = await asyncio.wait_for(answer, 1)
        assert (view["kind"], view["stage"], view["error_type"]) == (
            "dead_letter",
            "validate",
            "TextTooLong",
        )
        assert view["reason"] == "text has 13 chars, limit 10"

    asyncio.run(go())


def test_a_message_id_the_console_did_not_produce_answers_nothing() -> None:
    async def go() -> None:
        h = hub()
        answer = h.remember("own-3")
        h.on_records([routed("own-4")])
        await asyncio.sleep(0)
        assert not answer.done()
        assert h.window.unreadable == 0

    asyncio.run(go())


def test_unreadable_records_are_not_published() -> None:
    async def go() -> None:
        h = hub()
        q = h.subscribe()
        h.on_records([routed(topic="r.auto")])  # an escalate result on the auto topic
        assert events(q) == []
        assert h.window.unreadable == 1

    asyncio.run(go())


def test_a_subscriber_that_falls_behind_is_ended_not_waited_for() -> None:
    async def go() -> None:
        h = hub()
        slow = h.subscribe()
        for _ in range(QUEUE_EVENTS + 1):
            h.publish("stats", {})
        assert slow not in h.subscribers
        assert events(slow)[-1] is None  # its stream ends; EventSource reconnects
        fast = h.subscribe()
        h.publish("stats", {"n": 1})  # the others go on
        assert events(fast) == [("stats", {"n": 1})]

    asyncio.run(go())


def test_a_new_stream_opens_with_a_snapshot_of_what_is_already_there() -> None:
    async def go() -> None:
        h = hub()
        h.on_records([routed("m-1"), dead(b"not json")])
        q = h.subscribe()
        assert q is not None
        raw = q.get_nowait()
        assert raw is not None and raw.startswith(b"event: snapshot\n")
        snap = orjson.loads(raw.split(b"data: ", 1)[1])
        assert [e["message_id"] for e in snap["escalations"]] == ["m-1"]
        assert [e["stage"] for e in snap["dead_letters"]] == ["decode"]
        assert q.empty()  # the records are in the snapshot only, not queued twice

    asyncio.run(go())


def test_streams_are_capped_and_end_at_shutdown() -> None:
    async def go() -> None:
        h = hub()
        streams = [h.subscribe() for _ in range(MAX_SUBSCRIBERS)]
        assert h.subscribe() is None
        h.end_streams()
        assert all(events(q)[-1] is None for q in streams)
        assert not h.subscribers
        assert h.subscribe() is None  # closing

    asyncio.run(go())


def test_an_event_that_cannot_be_encoded_is_dropped_not_sent_half() -> None:
    async def go() -> None:
        h = hub()
        q = h.subscribe()
        h.publish("stats", {"batch_size": 10**40})  # over 64 bits: orjson refuses
        h.publish("stats", {"inference_ms": float("nan")})  # becomes null
        assert events(q) == [("stats", {"inference_ms": None})]

    asyncio.run(go())


def test_a_record_the_views_choke_on_is_counted_and_the_rest_go_on() -> None:
    async def go() -> None:
        h = hub()
        q = h.subscribe()
        good = routed("m-2")
        odd = SeenRecord(**{**dead(b"x").__dict__, "headers": None})  # views raise on it
        h.on_records([odd, good])
        assert h.stats()["unreadable"] == 1
        [(_, [record])] = events(q)
        assert record["message_id"] == "m-2"

    asyncio.run(go())


def test_a_textless_stream_gets_no_text_even_of_own_tries_or_with_live_text() -> None:
    async def go() -> None:
        h = hub(show_live_text=True)
        h.remember("own-1")
        h.on_records([routed("own-1", "my own words")])  # in the snapshot's lists
        bare, full = h.subscribe(text=False), h.subscribe()
        assert bare is not None and full is not None
        h.on_records([routed("other-1", "live words")])
        first = bare.get_nowait()
        assert first is not None and b"my own words" not in first
        [(_, records)] = events(bare)
        assert records[0]["text"] is None and records[0]["text_hidden"] is True
        assert "view" not in records[0] and "own" not in records[0]
        [(_, records)] = events(full)
        assert records[0]["text"] == "live words"
        h.unsubscribe(bare)
        assert bare not in h.textless and bare not in h.subscribers

    asyncio.run(go())
