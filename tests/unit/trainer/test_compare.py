"""The promotion rule, on plain scores: no model, no data."""

from __future__ import annotations

from dataclasses import replace

from trainer.compare import Pair, SetScore, decide

HEADS4 = ("intent", "urgency", "sentiment", "action")


def _fixed(acc: float = 0.9, f1: float = 0.9, false_auto: int = 3) -> SetScore:
    return SetScore(1000, dict.fromkeys(HEADS4, acc), dict.fromkeys(HEADS4, 1000), f1, false_auto)


def _recent(intent: float, action: float, false_auto: int = 1) -> SetScore:
    return SetScore(
        50, {"intent": intent, "action": action}, {"intent": 40, "action": 12}, 0.7, false_auto
    )


def _pairs(
    recent: tuple[SetScore, SetScore] = (_recent(0.70, 0.60), _recent(0.80, 0.60)),
    fixed: tuple[SetScore, SetScore] = (_fixed(), _fixed()),
) -> list[Pair]:
    return [
        Pair("recent traffic", "recent", *recent),
        Pair("clinc test_noisy", "fixed", *fixed),
        Pair("banking77 test_noisy", "fixed", _fixed(), _fixed()),
    ]


def test_better_on_recent_traffic_and_no_regression_promotes() -> None:
    verdict = decide(_pairs())
    assert verdict.promote
    assert "recent traffic: mean accuracy 0.6500 -> 0.7000 (+5.00 pts)" in verdict.reasons


def test_recent_mean_accuracy_is_over_the_heads_the_agents_gave() -> None:
    # intent up 10 points, action down 12: the mean over the two given heads falls.
    verdict = decide(_pairs(recent=(_recent(0.70, 0.60), _recent(0.80, 0.48))))
    assert not verdict.promote
    assert verdict.reasons == ["recent traffic: mean accuracy 0.6500 -> 0.6400, not higher"]


def test_equal_on_recent_traffic_is_not_enough() -> None:
    same = _recent(0.7, 0.6)
    assert not decide(_pairs(recent=(same, same))).promote


def test_no_held_back_traffic_rejects() -> None:
    verdict = decide(_pairs(recent=(SetScore(0), SetScore(0))))
    assert not verdict.promote and "no recent traffic" in verdict.reasons[0]


def test_a_fixed_set_may_lose_half_a_point_of_accuracy_per_head_not_more() -> None:
    assert decide(_pairs(fixed=(_fixed(acc=0.9), _fixed(acc=0.895)))).promote
    verdict = decide(_pairs(fixed=(_fixed(acc=0.9), _fixed(acc=0.894))))
    assert not verdict.promote
    assert "clinc test_noisy: intent accuracy -0.60 pts (limit -0.50)" in verdict.reasons
    assert len(verdict.reasons) == 4  # every head


def test_a_fixed_set_may_lose_one_point_of_intent_macro_f1_not_more() -> None:
    assert decide(_pairs(fixed=(_fixed(f1=0.9), _fixed(f1=0.89)))).promote
    verdict = decide(_pairs(fixed=(_fixed(f1=0.9), _fixed(f1=0.888))))
    assert verdict.reasons == ["clinc test_noisy: intent macro-F1 -1.20 pts (limit -1.00)"]


def test_false_auto_resolves_must_not_rise_on_a_fixed_set_or_recent_traffic() -> None:
    verdict = decide(_pairs(fixed=(_fixed(false_auto=3), _fixed(false_auto=4))))
    assert verdict.reasons == ["clinc test_noisy: false auto-resolves 3 -> 4"]
    recent = (_recent(0.7, 0.6, false_auto=1), _recent(0.8, 0.6, false_auto=2))
    assert decide(_pairs(recent=recent)).reasons == ["recent traffic: false auto-resolves 1 -> 2"]
    fewer = (_recent(0.7, 0.6, false_auto=2), _recent(0.8, 0.6, false_auto=0))
    assert decide(_pairs(recent=fewer)).promote


def test_recent_traffic_is_not_held_to_the_fixed_sets_limits() -> None:
    # A head the agents corrected may move a lot: that is what the feedback is for.
    current = _recent(0.70, 0.60)
    candidate = replace(_recent(0.90, 0.55), intent_macro_f1=0.5)
    assert decide(_pairs(recent=(current, candidate))).promote
