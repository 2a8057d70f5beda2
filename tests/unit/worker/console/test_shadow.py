from __future__ import annotations

from worker.console.shadow import COMPARED, ShadowAgreement

ALL = dict.fromkeys(COMPARED, True)


def test_agreement_per_head_and_route_per_candidate_version() -> None:
    s = ShadowAgreement()
    s.add(("minilm", "c1"), "s1", ALL, 1_000)
    s.add(("minilm", "c1"), "s1", {**ALL, "intent": False, "route": False}, 3_000)
    s.add(("minilm", "c1"), "s2", {**ALL, "intent": False}, 2_000)
    s.add(("minilm", "c2"), "s2", ALL, 4_000)
    r = s.report()
    assert r["compared"] == ["intent", "urgency", "sentiment", "action", "route"]
    c2, c1 = r["candidates"]  # the latest result first
    assert (c1["version"], c1["name"], c1["n"]) == ("c1", "minilm", 3)
    assert c1["agree"]["intent"] == {"agree": 1, "n": 3, "rate": 1 / 3}
    assert c1["agree"]["route"] == {"agree": 2, "n": 3, "rate": 2 / 3}
    assert c1["agree"]["action"]["rate"] == 1.0
    assert c1["serving"] == {"s1": 2, "s2": 1}
    assert (c1["first_ms"], c1["last_ms"]) == (1_000, 3_000)
    assert (c2["version"], c2["n"]) == ("c2", 1)


def test_a_missing_verdict_is_not_counted_and_an_unknown_key_is_left_out() -> None:
    s = ShadowAgreement()
    s.add(("m", "c1"), "s1", {"intent": True, "made_up": False}, None)
    [c1] = s.report()["candidates"]
    assert c1["agree"]["intent"] == {"agree": 1, "n": 1, "rate": 1.0}
    assert c1["agree"]["route"] == {"agree": 0, "n": 0, "rate": None}
    assert "made_up" not in c1["agree"]
    assert c1["first_ms"] is None


def test_the_candidate_not_heard_from_longest_goes_first_over_the_bound() -> None:
    s = ShadowAgreement(max_candidates=2)
    s.add(("m", "c1"), "s", ALL, 1)
    s.add(("m", "c2"), "s", ALL, 2)
    s.add(("m", "c1"), "s", ALL, 3)
    s.add(("m", "c3"), "s", ALL, 4)
    assert [c["version"] for c in s.report()["candidates"]] == ["c3", "c1"]
