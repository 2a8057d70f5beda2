"""The routing policy as a pure function."""

from __future__ import annotations

import pytest

from schemas.labels import ACTIONS
from schemas.messages import ROUTES
from worker.routing import ACTION_ROUTES, FALLBACK_ROUTES, ROUTE_ACTIONS, RoutingPolicy

LABELS = {
    "intent": "billing_issue",
    "urgency": "high",
    "sentiment": "calm",
    "action": "auto_resolve",
}


def _conf(action: float, urgency: float = 0.5) -> dict[str, float]:
    return {"intent": 0.9, "urgency": urgency, "sentiment": 0.9, "action": action}


@pytest.mark.parametrize(
    ("action", "route"),
    [
        ("escalate_to_human", "escalate"),
        ("auto_resolve", "auto_resolve"),
        ("request_more_info", "more_info"),
    ],
)
def test_the_route_follows_the_action(action: str, route: str) -> None:
    d = RoutingPolicy().decide({**LABELS, "action": action}, _conf(0.95))
    assert (d.route, d.action, d.reason) == (route, action, "model")


def test_low_confidence_goes_to_the_fallback() -> None:
    d = RoutingPolicy(min_action_confidence=0.7).decide(LABELS, _conf(0.69))
    assert (d.route, d.action, d.reason) == ("more_info", "request_more_info", "low_confidence")
    assert RoutingPolicy(0.7).decide(LABELS, _conf(0.7)).reason == "model"  # the bound is inclusive
    other = RoutingPolicy(0.7, fallback_route="escalate").decide(LABELS, _conf(0.1))
    assert (other.route, other.reason) == ("escalate", "low_confidence")


def test_the_urgency_rule_escalates_when_enabled() -> None:
    policy = RoutingPolicy(escalate_on_high_urgency=0.8)
    assert policy.decide(LABELS, _conf(0.99, urgency=0.85)).reason == "rule:urgency_high"
    assert policy.decide(LABELS, _conf(0.99, urgency=0.5)).route == "auto_resolve"
    assert RoutingPolicy().decide(LABELS, _conf(0.99, urgency=0.99)).route == "auto_resolve"


def test_empty_text_is_escalated_for_a_person() -> None:
    d = RoutingPolicy.empty_text()
    assert (d.route, d.reason) == ("escalate", "empty_text")


def test_an_unknown_fallback_is_refused() -> None:
    with pytest.raises(ValueError, match="fallback_route"):
        RoutingPolicy(fallback_route="nowhere")


def test_an_unfamiliar_message_goes_to_the_fallback_whatever_its_confidence() -> None:
    policy = RoutingPolicy(0.7, max_unfamiliarity=2.0)
    d = policy.decide(LABELS, _conf(0.99), unfamiliarity=2.5)
    assert (d.route, d.action, d.reason) == ("more_info", "request_more_info", "unfamiliar")
    assert policy.decide(LABELS, _conf(0.99), unfamiliarity=2.0).reason == "model"  # inclusive
    assert policy.decide(LABELS, _conf(0.99), unfamiliarity=float("nan")).reason == "unfamiliar"
    assert policy.decide(LABELS, _conf(0.99), unfamiliarity=None).reason == "model"  # not scored
    # no threshold (a model without an OOD scorer): the score is not read
    assert RoutingPolicy(0.7).decide(LABELS, _conf(0.99), unfamiliarity=1e9).reason == "model"
    assert "unfamiliarity<=2" in policy.name


def test_the_urgency_rule_still_escalates_an_unfamiliar_message() -> None:
    policy = RoutingPolicy(escalate_on_high_urgency=0.8, max_unfamiliarity=2.0)
    d = policy.decide(LABELS, _conf(0.99, urgency=0.9), unfamiliarity=9.0)
    assert (d.route, d.reason) == ("escalate", "rule:urgency_high")


def test_the_fallback_can_never_auto_resolve() -> None:
    with pytest.raises(
        ValueError, match="fallback_route must be one of \\('escalate', 'more_info'"
    ):
        RoutingPolicy(fallback_route="auto_resolve")


def test_every_action_has_a_route_and_every_route_an_action() -> None:
    assert set(ACTION_ROUTES) == set(ACTIONS)
    assert set(ROUTE_ACTIONS) == set(ROUTES)
    assert set(FALLBACK_ROUTES) <= set(ROUTES)
    assert "auto_resolve" not in FALLBACK_ROUTES
