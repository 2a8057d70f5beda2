from __future__ import annotations

from typing import Any

from worker.console.window import Window

NOW = 1_800_000_000.0  # a whole multiple of 5 s


def routed(route: str, at_s: float, low: bool = False) -> dict[str, Any]:
    return {"kind": "routed", "route": route, "low_confidence": low, "at_ms": int(at_s * 1000)}


def add(w: Window, view: dict[str, Any], now: float = NOW) -> None:
    w.add(view, {"kind": view["kind"], "at_ms": view.get("at_ms")}, now)


def test_rates_are_per_second_by_route_in_steps_oldest_first() -> None:
    w = Window(seconds=60)
    for _ in range(10):
        add(w, routed("escalate", NOW - 3))  # in the step [NOW-5, NOW)
    add(w, routed("auto_resolve", NOW - 58))  # the oldest step
    add(w, {"kind": "dead_letter", "at_ms": int((NOW - 7) * 1000)})
    s = w.series(NOW)
    assert (s["end_s"], s["step_s"]) == (int(NOW), 5)
    assert len(s["rates"]["escalate"]) == 12
    assert s["rates"]["escalate"][-1] == 2.0  # 10 in 5 s
    assert s["rates"]["auto_resolve"][0] == 0.2
    assert s["rates"]["dead_letter"][-2] == 0.2
    assert sum(s["rates"]["more_info"]) == 0


def test_an_old_record_is_listed_not_drawn_and_a_future_one_is_drawn_now() -> None:
    w = Window(seconds=60)
    add(w, routed("escalate", NOW - 3600))  # replayed after an outage
    add(w, routed("more_info", NOW + 3600))  # a producer's clock ahead
    rates = w.series(NOW + 5)["rates"]
    assert sum(rates["escalate"]) == 0
    assert len(w.escalations) == 1
    assert rates["more_info"][-1] == 0.2


def test_low_confidence_rate_over_the_last_minute() -> None:
    w = Window(seconds=300)
    add(w, routed("more_info", NOW - 10, low=True))
    add(w, routed("escalate", NOW - 20))
    add(w, routed("escalate", NOW - 200, low=True))  # older than the span
    add(w, {"kind": "dead_letter", "at_ms": int((NOW - 5) * 1000)})  # not routed
    assert w.low_confidence(NOW) == {"span_s": 60, "routed": 2, "low": 1}


def test_recent_lists_keep_the_newest_first_and_only_n() -> None:
    w = Window(recent=3)
    for i in range(5):
        w.add(routed("escalate", NOW), {"i": i}, NOW)
        w.add(routed("auto_resolve", NOW), {"auto": i}, NOW)
        w.add({"kind": "dead_letter", "at_ms": None}, {"d": i}, NOW)
    assert [s["i"] for s in w.escalations] == [4, 3, 2]  # escalations only
    assert [s["d"] for s in w.dead_letters] == [4, 3, 2]


def test_unreadable_records_are_counted_only() -> None:
    w = Window()
    w.add({"kind": "unreadable", "why": "x"}, {}, NOW)
    assert w.unreadable == 1
    assert not w.escalations and not w.dead_letters


def test_old_seconds_are_pruned() -> None:
    w = Window(seconds=60)
    for t in range(600):
        add(w, routed("escalate", NOW + t), now=NOW + t)
    assert len(w._counts) <= 60 + 11
    assert w.series(NOW + 600)["rates"]["escalate"][-1] == 1.0
