from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from schemas.learning import ReviewItem
from schemas.messages import RouteReason
from worker import codec
from worker.inference import SKIPPED, ItemResult
from worker.intake import Item
from worker.model.protocol import Prediction
from worker.outgoing import Outgoing
from worker.review import Sampler, drawn, review_value, simhash, uncertainty
from worker.settings import ReviewSettings

ACTIONS = ("auto_resolve", "request_more_info", "escalate_to_human")
INTENTS = ("refund_request", "billing_issue", "account_access")


def prediction(action: list[float], intent: list[float] | None = None) -> Prediction:
    intent = intent or [0.98, 0.01, 0.01]
    blocks = {
        "action": {
            "label": "",
            "confidence": max(action),
            "probabilities": dict(zip(ACTIONS, action, strict=True)),
        },
        "intent": {
            "label": "",
            "confidence": max(intent),
            "probabilities": dict(zip(INTENTS, intent, strict=True)),
        },
    }
    labels = {"action": ACTIONS[int(np.argmax(action))], "intent": INTENTS[int(np.argmax(intent))]}
    return Prediction(labels, {"action": max(action), "intent": max(intent)}, blocks, None)


def item(n: int, ids: list[int] | None = None) -> Item:
    rec = codec.Record("in", 0, n, b"k", b"{}", [], None)
    accepted = codec.Accepted(rec, {"message_id": f"m-{n}"}, f"m-{n}", None, "text")
    return Item(rec, accepted, ids if ids is not None else [101, 1000 + n, 2000 + n, 3000 + n, 102])


def routed(reason: RouteReason) -> Outgoing:
    return Outgoing("support.more_info", b"k", b'{"r":1}', [], "more_info", reason)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def batch(
    reasons: list[RouteReason], preds: list[ItemResult] | None = None
) -> tuple[Any, Any, Any]:
    items = [item(n) for n in range(len(reasons))]
    outgoing = [routed(r) for r in reasons]
    results = preds or [prediction([0.4, 0.35, 0.25]) for _ in reasons]
    return items, outgoing, results


def test_every_uncertain_result_is_queued_and_no_confident_one_without_a_share() -> None:
    s = Sampler(ReviewSettings(enabled=True, random_share=0.0, max_per_minute=100))
    reasons: list[RouteReason] = ["unfamiliar", "model", "low_confidence", "rule:urgency_high"]
    picks = s.pick(*batch(reasons))
    assert [(p.index, p.reason, p.weight) for p in picks] == [
        (0, "unfamiliar", 1.0),
        (2, "low_confidence", 1.0),
    ]


def test_dead_letters_and_blank_texts_are_never_queued() -> None:
    s = Sampler(ReviewSettings(enabled=True, random_share=1.0, max_per_minute=100))
    items, outgoing, results = batch(["unfamiliar", "model"])
    outgoing[0] = Outgoing("support.dlq", None, b"x", [], stage="validate")
    results[1] = SKIPPED
    assert s.pick(items, outgoing, results) == []


def test_the_random_share_is_a_pure_function_of_the_message_id() -> None:
    ids = [f"msg-{i}" for i in range(20_000)]
    share = sum(drawn(i, 0.05) for i in ids) / len(ids)
    assert 0.04 < share < 0.06
    assert [drawn(i, 0.05) for i in ids[:200]] == [drawn(i, 0.05) for i in ids[:200]]
    assert not any(drawn(i, 0.0) for i in ids[:200])


def test_random_picks_carry_the_inverse_share_as_weight() -> None:
    s = Sampler(ReviewSettings(enabled=True, random_share=1.0, max_per_minute=100))
    picks = s.pick(*batch(["model", "model"]))
    assert [(p.reason, p.weight) for p in picks] == [("random", 1.0), ("random", 1.0)]
    s = Sampler(ReviewSettings(enabled=True, random_share=0.5, max_per_minute=1000))
    items = [item(n) for n in range(400)]
    picks = s.pick(items, [routed("model")] * 400, [prediction([0.9, 0.05, 0.05])] * 400)
    assert 150 < len(picks) < 250 and {p.weight for p in picks} == {2.0}


def test_candidates_rank_by_the_smaller_margin_of_intent_and_action() -> None:
    confident = prediction([0.9, 0.05, 0.05], [0.9, 0.05, 0.05])
    torn_intent = prediction([0.9, 0.05, 0.05], [0.45, 0.44, 0.11])
    torn_action = prediction([0.5, 0.3, 0.2], [0.9, 0.05, 0.05])
    assert uncertainty(torn_intent) > uncertainty(torn_action) > uncertainty(confident)
    s = Sampler(ReviewSettings(enabled=True, random_share=0.0, max_per_minute=2))
    picks = s.pick(*batch(["low_confidence"] * 3, [confident, torn_intent, torn_action]))
    assert [p.index for p in picks] == [1, 2]  # the budget of 2 takes the most uncertain


def test_the_rate_is_bounded_by_a_token_bucket_spent_only_when_committed() -> None:
    clock = Clock()
    s = Sampler(ReviewSettings(enabled=True, random_share=0.0, max_per_minute=6), clock)
    reasons: list[RouteReason] = ["unfamiliar"] * 10
    items, outgoing, results = batch(reasons)
    first = s.pick(items, outgoing, results)
    assert len(first) == 6
    assert len(s.pick(items, outgoing, results)) == 6  # nothing committed: nothing spent
    s.taken(first)
    assert s.pick(items[:1], outgoing[:1], results[:1]) == []  # budget and near-copies
    clock.now += 20  # a third of a minute refills 2
    fresh = [
        item(100 + n, [101, 7000 + 97 * n, 8000 + 89 * n, 9000 + 83 * n, 102]) for n in range(10)
    ]
    assert len(s.pick(fresh, outgoing, results)) == 2
    assert s.skipped_budget > 0


def test_near_copies_are_queued_once() -> None:
    s = Sampler(ReviewSettings(enabled=True, random_share=0.0, max_per_minute=100, max_hamming=3))
    question = [101, *range(2000, 2012), 102]
    same = [item(0, question), item(1, list(question)), item(2, [101, *range(5000, 5012), 102])]
    outgoing = [routed("unfamiliar")] * 3
    results = [prediction([0.4, 0.35, 0.25])] * 3
    picks = s.pick(same, outgoing, results)
    assert [p.index for p in picks] == [0, 2] and s.skipped_near_copy == 1
    s.taken(picks)
    again = s.pick([item(3, list(question))], outgoing[:1], results[:1])
    assert again == []  # the window remembers what was queued in earlier batches


def test_simhash_keeps_near_texts_close_and_different_texts_apart() -> None:
    base = list(range(3000, 3030))
    one_changed = [*base[:15], 9999, *base[16:]]
    other = list(range(6000, 6030))
    assert (simhash(base) ^ simhash(one_changed)).bit_count() < (
        simhash(base) ^ simhash(other)
    ).bit_count()
    assert (simhash(base) ^ simhash(other)).bit_count() > 16


@pytest.mark.parametrize("reason", ["unfamiliar", "random"])
def test_the_review_value_is_a_valid_review_item_around_the_result_bytes(reason: str) -> None:
    s = Sampler(ReviewSettings(enabled=True, random_share=1.0, max_per_minute=100))
    items, outgoing, results = batch([reason if reason != "random" else "model"])  # type: ignore[list-item]
    pick = s.pick(items, outgoing, results)[0]
    result = {
        "schema_version": 1,
        "message_id": "m-0",
        "conversation_id": None,
        "route": "more_info",
        "action": "request_more_info",
        "predictions": None,
        "routing": {"policy": "p", "reason": "unfamiliar", "truncated": False},
        "model": {"name": "n", "version": "v", "content_hash": "h"},
        "timing": {
            "kafka_timestamp_ms": None,
            "classified_at": "t",
            "queue_ms": None,
            "inference_ms": 1.0,
            "batch_size": 1,
        },
        "source": {"topic": "in", "partition": 0, "offset": 0},
        "message": {"message_id": "m-0", "text": "hi"},
    }
    value = review_value(pick, orjson.dumps(result))
    parsed = ReviewItem.model_validate_json(value)
    assert parsed.review.reason == reason and parsed.result.message_id == "m-0"
