from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.worker.console.records import dead, routed
from worker.console.app import QUEUE_EVENTS, ConsoleSettings, Hub
from worker.settings import TopicNames, WorkerSettings

TOPICS = TopicNames(escalate="r.escalate", auto_resolve="r.auto", more_info="r.more", dlq="r.dlq")


def hub(show_live_text: bool = False) -> Hub:
    ws = WorkerSettings(topics=TOPICS)
    return Hub(ConsoleSettings(show_live_text=show_live_text), ws)


def events(q: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


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
        h.publish("stats", {})  # the others go on
        assert h.snapshot()["escalations"] == []

    asyncio.run(go())
