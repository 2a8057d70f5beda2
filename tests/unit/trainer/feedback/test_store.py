"""The SQLite store: idempotent chunks, the routed index's choice, erasure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.messages import OutboundMessage
from tests.unit.trainer.feedback.builders import correction, result
from trainer.feedback.errors import StoreError
from trainer.feedback.join import Routed, routed_from
from trainer.feedback.records import RANK_REVIEW, RANK_ROUTE, IndexEntry
from trainer.feedback.store import STORE_FILE, Store, locked

FB = "support.feedback"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / STORE_FILE) as store:
        yield store


def routed(message_id: str, customer_id: str | None = "cust-1") -> Routed:
    return routed_from(OutboundMessage.model_validate(result(message_id, customer_id=customer_id)))


def entry(
    message_id: str, offset: int, topic: str = "esc", us: int = 10, rank: int = RANK_ROUTE
) -> IndexEntry:
    return IndexEntry(message_id, topic, 0, offset, us, rank)


def test_a_chunk_applied_twice_changes_nothing(db: Store) -> None:
    chunk = [
        correction("m1", offset=0),
        correction("m1", offset=1, minutes=2, intent="refund_request"),
    ]
    assert db.apply_feedback(FB, chunk, [(0, 2)], {0: 3}) == 3
    first = (db.corrections(), db.counters())
    # A crash after the SQLite commit, before Kafka's: the group reads the chunk again.
    assert db.apply_feedback(FB, chunk, [(0, 2)], {0: 3}) == 0
    assert (db.corrections(), db.counters()) == first
    counts = db.counters()
    assert (counts["feedback_read"], counts["feedback_valid"], counts["feedback_invalid"]) == (
        3,
        2,
        1,
    )
    assert counts["feedback_superseded"] == 1
    assert db.corrections()[0].feedback.labels.intent == "refund_request"
    assert db.applied(FB) == {0: 3}


def test_an_older_correction_read_later_loses(db: Store) -> None:
    db.apply_feedback(
        FB, [correction("m1", offset=0, minutes=10, intent="refund_request")], [], {0: 1}
    )
    db.apply_feedback(
        FB, [correction("m1", offset=1, minutes=1, intent="account_access")], [], {0: 2}
    )
    (kept,) = db.corrections()
    assert kept.feedback.labels.intent == "refund_request"
    assert db.counters()["feedback_superseded"] == 1


def test_a_store_belongs_to_one_group(db: Store) -> None:
    db.bind_group("g1")
    db.bind_group("g1")
    with pytest.raises(StoreError, match="collected with group 'g1'"):
        db.bind_group("g2")


def test_the_index_prefers_the_latest_routing_then_the_route_topics_copy(db: Store) -> None:
    db.index([entry("m1", 5, "rev", us=10, rank=RANK_REVIEW)], 0, {("rev", 0): 6})
    db.index([entry("m1", 3, "esc", us=10), entry("m2", 4, "esc", us=20)], 1, {("esc", 0): 5})
    db.index([entry("m2", 9, "rev", us=10, rank=RANK_REVIEW)], 0, {("rev", 0): 10})
    db.apply_feedback(FB, [correction("m1"), correction("m2", offset=1)], [], {0: 2})
    assert [(e.message_id, e.topic, e.offset) for e in db.wanted()] == [
        ("m1", "esc", 3),
        ("m2", "esc", 4),
    ]
    assert db.routed_positions() == {("rev", 0): 10, ("esc", 0): 5}
    assert (db.counters()["routed_indexed"], db.counters()["routed_unreadable"]) == (4, 1)


def test_fetched_results_are_kept_once_and_a_gone_one_is_not_fetched_again(db: Store) -> None:
    db.index([entry("m1", 0), entry("m2", 1), entry("m3", 2)], 0, {("esc", 0): 3})
    db.apply_feedback(FB, [correction(f"m{i}", offset=i) for i in (1, 2)], [], {0: 3})
    e1, e2 = db.wanted()
    db.save_routed([(e1, routed("m1")), (e2, None)])
    assert db.wanted() == []
    assert db.routed() == {"m1": routed("m1"), "m2": None}  # m3: never corrected, never fetched


def test_forget_removes_a_customer_and_keeps_them_out(db: Store) -> None:
    db.index([entry("m1", 0), entry("m2", 1), entry("m3", 2)], 0, {("esc", 0): 3})
    db.apply_feedback(FB, [correction("m1"), correction("m2", offset=1)], [], {0: 2})
    e1, e2 = db.wanted()
    db.save_routed([(e1, routed("m1", "alice")), (e2, routed("m2", "bob"))])
    assert db.forget("alice") == 1
    assert [c.message_id for c in db.corrections()] == ["m2"]
    assert "m1" not in db.routed()
    # A later correction of alice's message: fetched, then dropped for the erasure.
    db.apply_feedback(FB, [correction("m1", offset=5, minutes=3)], [], {0: 6})
    (again,) = db.wanted()
    assert db.save_routed([(again, routed("m1", "alice"))]) == 1
    assert [c.message_id for c in db.corrections()] == ["m2"]
    assert db.wanted() == []
    assert (db.counters()["erased_removed"], db.counters()["erased_dropped"]) == (1, 1)
    assert db.forget("nobody-we-know") == 0


def test_one_collect_or_forget_at_a_time(tmp_path: Path) -> None:
    with (
        locked(tmp_path),
        pytest.raises(StoreError, match="another collect or forget"),
        locked(tmp_path),
    ):
        pass
    with locked(tmp_path):  # released
        pass
