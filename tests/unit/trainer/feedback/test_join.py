"""Corrections joined with routed results: latest wins, one row per message, unmatched
counted, a fingerprint that only the content moves, rows the trainer reads."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from schemas.messages import OutboundMessage
from tests.unit.trainer.feedback.builders import correction, result
from trainer.data.records import read_labelled
from trainer.feedback import join
from trainer.feedback.join import Routed


def routed(message_id: str, **kw: Any) -> Routed:
    return join.routed_from(OutboundMessage.model_validate(result(message_id, **kw)))


def test_the_latest_correction_wins_by_agent_time() -> None:
    older = correction("m1", offset=9, minutes=1, intent="refund_request")
    latest = correction("m1", offset=1, minutes=5, intent="account_access")
    oldest = correction("m1", offset=5, minutes=0, intent="billing_issue")
    winners, superseded = join.latest([older, latest, oldest])
    assert winners == {"m1": latest}
    assert superseded == 2


def test_a_tie_in_time_goes_to_the_later_record_partition_then_offset() -> None:
    a = correction("m1", partition=0, offset=3)
    b = correction("m1", partition=0, offset=7)
    c = correction("m1", partition=1, offset=0)
    assert join.latest([b, a])[0]["m1"] == b
    assert join.latest([c, b, a])[0]["m1"] == c


def test_one_row_per_message_sorted_by_message_id() -> None:
    corrections = [
        correction("m2", offset=0, intent="refund_request"),
        correction("m1", offset=1),
        correction("m2", offset=2, minutes=1, intent="account_access"),
        correction("m1", offset=3),  # the same correction again: a duplicate
    ]
    joined = join.join(corrections, {"m1": routed("m1"), "m2": routed("m2")})
    assert [r["message_id"] for r in joined.rows] == ["m1", "m2"]
    assert joined.rows[1]["intent"] == "account_access"
    assert joined.superseded == 2


def test_unmatched_is_counted_and_never_guessed() -> None:
    corrections = [correction("m1"), correction("ghost"), correction("gone")]
    joined = join.join(corrections, {"m1": routed("m1"), "gone": None})
    assert [r["message_id"] for r in joined.rows] == ["m1"]
    assert joined.unmatched == ["ghost"]
    assert joined.unavailable == ["gone"]


def test_a_row_has_the_agents_labels_and_the_routed_results_facts() -> None:
    c = correction("m1", minutes=90, review_reason="random", urgency="high", action="auto_resolve")
    row = join.row(c, routed("m1", customer_id="cust-9", version="v7"))
    assert row == {
        "message_id": "m1",
        "text": "my card was declined at the store",
        "intent": None,  # not given: neither confirmed nor corrected
        "urgency": "high",
        "sentiment": None,
        "action": "auto_resolve",
        "collection": "feedback",
        "source": "",
        "customer_id": "cust-9",
        "at": "2025-03-01T13:30:00Z",
        "classified_at": "2025-03-01T11:00:00.000000Z",
        "model_version": "v7",  # the routed result's, not the one the agent named
        "agent_id": "agent-1",
        "review_reason": "random",
        "predicted": {
            "action": "auto_resolve",
            "intent": "refund_request",
            "sentiment": "calm",
            "urgency": "low",
        },
    }


def test_a_result_without_predictions_has_predicted_null() -> None:
    assert routed("m1", predicted=False).predicted is None


def test_blank_text_and_erased_customers_make_no_row() -> None:
    corrections = [correction("blank"), correction("mine"), correction("theirs")]
    found = {
        "blank": routed("blank", text="   "),
        "mine": routed("mine", customer_id="me"),
        "theirs": routed("theirs", customer_id="them"),
    }
    joined = join.join(corrections, found, frozenset({join.customer_hash("me")}))
    assert [r["message_id"] for r in joined.rows] == ["theirs"]
    assert joined.blank_text == ["blank"]
    assert joined.erased == ["mine"]


def test_fingerprint_is_stable_order_independent_and_moves_with_content() -> None:
    corrections = [correction(f"m{i}", offset=i, minutes=i) for i in range(20)]
    found = {f"m{i}": routed(f"m{i}") for i in range(20)}
    first = join.join(corrections, found)
    shuffled = corrections[:]
    random.Random(7).shuffle(shuffled)
    again = join.join(shuffled, found)
    assert join.fingerprint(first.rows) == join.fingerprint(again.rows)
    assert join.fingerprint(reversed(first.rows)) == join.fingerprint(first.rows)
    assert join.fingerprint(first.rows) == hashlib.sha256(join.canonical(first.rows)).hexdigest()
    changed = join.join(
        [*corrections, correction("m3", offset=99, minutes=99, sentiment="angry")], found
    )
    assert join.fingerprint(changed.rows) != join.fingerprint(first.rows)


def test_rows_are_readable_by_the_trainers_reader(tmp_path: Path) -> None:
    corrections = [
        correction("m1", intent="refund_request"),
        correction("m2", urgency="high", sentiment="angry"),
    ]
    rows = join.join(corrections, {"m1": routed("m1"), "m2": routed("m2")}).rows
    path = tmp_path / "dataset.jsonl"
    path.write_bytes(join.canonical(rows))
    examples, skipped = read_labelled(path)
    assert skipped == 0
    assert [e.collection for e in examples] == ["feedback", "feedback"]
    assert examples[0].intent == "refund_request"
    assert (examples[1].urgency, examples[1].sentiment) == ("high", "angry")


def test_counts_per_head_and_per_review_reason() -> None:
    corrections = [
        correction("m1", intent="refund_request", review_reason="random"),
        correction("m2", intent="refund_request", action="escalate_to_human"),
    ]
    rows = join.join(corrections, {"m1": routed("m1"), "m2": routed("m2")}).rows
    labels = join.label_counts(rows)
    assert labels["intent"]["refund_request"] == 2
    assert labels["intent"]["billing_issue"] == 0
    assert labels["action"] == {"auto_resolve": 0, "request_more_info": 0, "escalate_to_human": 1}
    assert sum(labels["urgency"].values()) == 0
    assert join.review_reason_counts(rows) == {
        "unfamiliar": 0,
        "low_confidence": 0,
        "random": 1,
        "none": 1,
    }
