"""The routing policy: a pure function from predictions to a route and a reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROUTES = ("escalate", "auto_resolve", "more_info")
ACTION_ROUTES: Mapping[str, str] = {
    "escalate_to_human": "escalate",
    "auto_resolve": "auto_resolve",
    "request_more_info": "more_info",
}
ROUTE_ACTIONS = {route: action for action, route in ACTION_ROUTES.items()}


@dataclass(frozen=True)
class Decision:
    route: str
    action: str
    reason: str  # model | low_confidence | unfamiliar | rule:<name> | empty_text


@dataclass(frozen=True)
class RoutingPolicy:
    """Route by the action head; unfamiliar input and low confidence go to the fallback;
    optional safety rules."""

    min_action_confidence: float = 0.7
    fallback_route: str = "more_info"
    # Safety rule: urgency "high" with at least this confidence escalates, whatever the action.
    escalate_on_high_urgency: float | None = None
    # The artifact's OOD threshold: a message scoring above it is unlike anything the model
    # was trained on, so its labels (and its confidence) mean little. None = no check.
    max_unfamiliarity: float | None = None

    def __post_init__(self) -> None:
        # The fallback takes what the model cannot vouch for, so it must never auto-resolve.
        fallbacks = tuple(r for r in ROUTES if r != "auto_resolve")
        if self.fallback_route not in fallbacks:
            raise ValueError(
                f"fallback_route must be one of {fallbacks}, got {self.fallback_route!r}"
            )

    @property
    def name(self) -> str:
        rule = (
            f",urgency_high>={self.escalate_on_high_urgency}"
            if self.escalate_on_high_urgency is not None
            else ""
        )
        ood = (
            f",unfamiliarity<={self.max_unfamiliarity:.4g}"
            if self.max_unfamiliarity is not None
            else ""
        )
        return f"action>={self.min_action_confidence}{ood},fallback={self.fallback_route}{rule}"

    def decide(
        self,
        labels: Mapping[str, str],
        confidences: Mapping[str, float],
        unfamiliarity: float | None = None,
    ) -> Decision:
        """The route for one message from its predicted labels, calibrated confidences and
        OOD score."""
        if (
            self.escalate_on_high_urgency is not None
            and labels["urgency"] == "high"
            and confidences["urgency"] >= self.escalate_on_high_urgency
        ):
            return Decision("escalate", "escalate_to_human", "rule:urgency_high")
        if (
            self.max_unfamiliarity is not None
            and unfamiliarity is not None
            and not unfamiliarity <= self.max_unfamiliarity  # NaN is unfamiliar too
        ):
            return Decision(self.fallback_route, ROUTE_ACTIONS[self.fallback_route], "unfamiliar")
        if confidences["action"] < self.min_action_confidence:
            return Decision(
                self.fallback_route, ROUTE_ACTIONS[self.fallback_route], "low_confidence"
            )
        return Decision(ACTION_ROUTES[labels["action"]], labels["action"], "model")

    @staticmethod
    def empty_text() -> Decision:
        """Nothing to classify: a person looks at it."""
        return Decision("escalate", "escalate_to_human", "empty_text")
