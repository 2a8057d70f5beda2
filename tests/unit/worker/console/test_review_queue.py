from __future__ import annotations

from worker.console.review_queue import Queued, ReviewQueue


def item(message_id: str, priority: float, reason: str = "low_confidence") -> Queued:
    return Queued(message_id, "v1", reason, priority, {"message_id": message_id})


def ids(q: ReviewQueue, limit: int = 100) -> list[str]:
    return [i.message_id for i in q.top(limit)]


def test_the_highest_priority_comes_first_and_ties_keep_their_arrival_order() -> None:
    q = ReviewQueue()
    for mid, priority in [("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", 0.9), ("e", 1.0)]:
        assert q.add(item(mid, priority))
    assert ids(q) == ["e", "b", "d", "c", "a"]
    assert ids(q, 2) == ["e", "b"]
    assert len(q) == 5
    assert q.get("c") == item("c", 0.5)
    assert q.get("zzz") is None


def test_an_answered_item_leaves_and_never_comes_back() -> None:
    q = ReviewQueue()
    q.add(item("a", 0.5))
    q.add(item("b", 0.7))
    before = q.revision
    assert q.answer("b") == item("b", 0.7)
    assert q.revision > before
    assert ids(q) == ["a"]
    assert q.answered("b") and "b" not in q
    assert not q.add(item("b", 0.7))  # read again (a replay): still answered
    assert ids(q) == ["a"]


def test_a_correction_read_before_its_item_keeps_the_item_out() -> None:
    q = ReviewQueue()
    revision = q.revision
    assert q.answer("early") is None
    assert q.revision == revision  # nothing the page shows changed
    assert not q.add(item("early", 0.9))
    assert len(q) == 0


def test_the_same_message_queued_again_takes_its_new_place() -> None:
    q = ReviewQueue()
    q.add(item("a", 0.9))
    q.add(item("b", 0.5))
    q.add(item("a", 0.1))
    assert ids(q) == ["b", "a"]
    assert len(q) == 2
    assert q.get("a") == item("a", 0.1)


def test_over_the_bound_the_oldest_arrival_is_dropped_whatever_its_priority() -> None:
    q = ReviewQueue(max_items=3)
    q.add(item("old-high", 1.0))
    q.add(item("b", 0.2))
    q.add(item("c", 0.3))
    q.add(item("d", 0.1))
    assert ids(q) == ["c", "b", "d"]
    assert q.dropped == 1
    assert not q.answered("old-high")  # dropped is not answered: it may be queued again


def test_the_answered_ids_are_bounded_too() -> None:
    q = ReviewQueue(max_answered=2)
    for mid in ("a", "b", "c"):
        q.answer(mid)
    assert not q.answered("a")
    assert q.answered("b") and q.answered("c")
