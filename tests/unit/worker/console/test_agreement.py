from __future__ import annotations

from typing import Any

import pytest

from worker.console.agreement import Agreement

MODEL = {
    "intent": "billing_issue",
    "urgency": "high",
    "sentiment": "angry",
    "action": "escalate_to_human",
}
HOUR = 3600
T0 = 1_764_151_200  # 2025-11-26 10:00 UTC, on the hour


def heads(report: dict[str, Any], row: int = 0, key: str = "versions") -> dict[str, Any]:
    return {h: (t["agree"], t["n"]) for h, t in report[key][row]["heads"].items()}


def test_each_labelled_head_is_one_observation_of_agreement() -> None:
    a = Agreement()
    a.on_item("m1", "v1", MODEL)
    a.on_feedback("m1", {**MODEL, "intent": "refund_request"}, T0 + 60)
    a.on_item("m2", "v1", MODEL)
    a.on_feedback("m2", {"urgency": "high"}, T0 + 120)  # one head: the others not counted
    r = a.report()
    [v1] = r["versions"]
    assert (v1["version"], v1["n"]) == ("v1", 2)
    assert heads(r) == {"intent": (0, 1), "urgency": (2, 2), "sentiment": (1, 1), "action": (1, 1)}
    assert v1["heads"]["urgency"]["rate"] == 1.0
    assert v1["heads"]["intent"]["rate"] == 0.0


def test_a_correction_read_before_its_item_is_joined_when_the_item_comes() -> None:
    a = Agreement()
    a.on_feedback("m1", {"intent": "billing_issue"}, T0)
    assert a.report()["versions"] == []
    assert a.report()["waiting"] == 1
    a.on_item("m1", "v1", MODEL)
    r = a.report()
    assert r["waiting"] == 0
    assert heads(r)["intent"] == (1, 1)


def test_a_later_correction_of_the_same_message_replaces_the_earlier() -> None:
    a = Agreement()
    a.on_item("m1", "v1", MODEL)
    a.on_feedback("m1", {"intent": "refund_request"}, T0 + 10)
    a.on_feedback("m1", {"intent": "billing_issue", "action": "auto_resolve"}, T0 + 2 * HOUR)
    r = a.report()
    assert r["versions"][0]["n"] == 1
    assert heads(r)["intent"] == (1, 1)
    assert heads(r)["action"] == (0, 1)
    # It moved to the later hour: the earlier bucket is empty and not reported.
    assert [(b["start_s"], b["n"]) for b in r["trend"]] == [(T0 + 2 * HOUR, 1)]


def test_the_same_correction_seen_twice_counts_once() -> None:
    """The console records its own correction at once and reads it back from the topic."""
    a = Agreement()
    a.on_item("m1", "v1", MODEL)
    for _ in range(2):
        a.on_feedback("m1", MODEL, T0)
    r = a.report()
    assert r["versions"][0]["n"] == 1
    assert heads(r)["intent"] == (1, 1)


def test_per_version_and_per_hour_newest_first() -> None:
    a = Agreement()
    a.on_item("a", "v1", MODEL)
    a.on_item("b", "v2", MODEL)
    a.on_item("c", "v2", MODEL)
    a.on_feedback("a", {"intent": "billing_issue"}, T0 + 5)
    a.on_feedback("b", {"intent": "refund_request"}, T0 + HOUR + 5)
    a.on_feedback("c", {"intent": "billing_issue"}, T0 + HOUR + 3599)
    r = a.report()
    assert r["bucket_s"] == HOUR
    assert [v["version"] for v in r["versions"]] == ["v2", "v1"]  # latest correction first
    assert heads(r, 0)["intent"] == (1, 2)
    assert heads(r, 1)["intent"] == (1, 1)
    assert [(b["start_s"], b["version"], b["n"]) for b in r["trend"]] == [
        (T0 + HOUR, "v2", 2),
        (T0, "v1", 1),
    ]
    assert a.report(max_trend=1)["trend"][0]["start_s"] == T0 + HOUR


def test_the_weighted_rate_lets_each_item_stand_for_its_share_of_traffic() -> None:
    a = Agreement()
    a.on_item("hard", "v1", MODEL, weight=1.0)  # queued because unsure: the model was wrong
    a.on_item("random", "v1", MODEL, weight=50.0)  # the random 2%: it was right
    a.on_feedback("hard", {"action": "auto_resolve"}, T0)
    a.on_feedback("random", {"action": "escalate_to_human"}, T0)
    action = a.report()["versions"][0]["heads"]["action"]
    assert action["rate"] == 0.5
    assert action["weighted_rate"] == pytest.approx(50 / 51)


def test_a_message_the_model_gave_no_labels_counts_nowhere() -> None:
    a = Agreement()
    a.on_item("empty", "v1", None)
    a.on_feedback("empty", {"intent": "general_question"}, T0)
    r = a.report()
    assert r["versions"] == [] and r["trend"] == []
    assert r["waiting"] == 0  # joined: not waiting for an item


def test_the_items_and_the_waiting_corrections_are_bounded() -> None:
    a = Agreement(max_items=2, max_pending=2)
    for mid in ("a", "b", "c"):
        a.on_item(mid, "v1", MODEL)
    a.on_feedback("a", MODEL, T0)  # its item was evicted: it waits
    assert a.report()["versions"] == []
    for mid in ("x", "y"):
        a.on_feedback(mid, MODEL, T0)
    assert a.report()["waiting"] == 2
    assert a.unmatched == 1
    a.on_feedback("c", MODEL, T0)
    assert a.report()["versions"][0]["n"] == 1


def test_the_oldest_buckets_go_and_a_replacement_does_not_bring_one_back() -> None:
    a = Agreement(max_buckets=2)
    for i, mid in enumerate(("a", "b", "c")):
        a.on_item(mid, "v1", MODEL)
        a.on_feedback(mid, MODEL, T0 + i * HOUR)
    r = a.report()
    assert r["versions"][0]["n"] == 3  # the version keeps everything
    assert [b["start_s"] for b in r["trend"]] == [T0 + 2 * HOUR, T0 + HOUR]
    a.on_feedback("a", {"intent": "refund_request"}, T0 + 2 * HOUR)  # its bucket is gone
    r = a.report()
    assert [(b["start_s"], b["n"]) for b in r["trend"]] == [(T0 + 2 * HOUR, 2), (T0 + HOUR, 1)]
    assert r["versions"][0]["n"] == 3
    assert heads(r)["intent"] == (2, 3)
