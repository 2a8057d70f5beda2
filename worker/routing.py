"""The routing policy: a pure function from predictions to a route and a reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, get_args

from schemas.labels import Action
from schemas.messages import FallbackRoute, Route, RouteReason

# The notebook's threshold; an artifact ships its own (manifest min_action_confidence).
DEFAULT_MIN_ACTION_CONFIDENCE: Final = 0.7
FALLBACK_ROUTES: Final[tuple[FallbackRoute, ...]] = get_args(FallbackRoute)
ROUTE_ACTIONS: Final[Mapping[Route, Action]] = {
    "escalate": "escalate_to_human",
    "auto_resolve": "auto_resolve",
    "more_info": "request_more_info",
}
# Keyed by str: the model's label, which the action head draws from ACTIONS.
ACTION_ROUTES: Final[Mapping[str, Route]] = {a: r for r, a in ROUTE_ACTIONS.items()}


@dataclass(frozen=True)
class Decision:
    route: Route
    action: Action
    reason: RouteReason


@dataclass(frozen=True)
class RoutingPolicy:
    """Route by the action head; unfamiliar input and low confidence go to the fallback;
    optional safety rules."""

    min_action_confidence: float = DEFAULT_MIN_ACTION_CONFIDENCE
    fallback_route: FallbackRoute = "more_info"
    # Safety rule: urgency "high" with at least this confidence escalates, whatever the action.
    escalate_on_high_urgency: float | None = None
    # The artifact's OOD threshold: a message scoring above it is unlike anything the model
    # was trained on, so its labels (and its confidence) mean little. None = no check.
    max_unfamiliarity: float | None = None

    def __post_init__(self) -> None:
        # The fallback takes what the model cannot vouch for, so it must never auto-resolve;
        # the type says so, this holds callers that were not type-checked to it.
        if self.fallback_route not in FALLBACK_ROUTES:
            raise ValueError(
                f"fallback_route must be one of {FALLBACK_ROUTES}, got {self.fallback_route!r}"
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
        route = ACTION_ROUTES[labels["action"]]
        return Decision(route, ROUTE_ACTIONS[route], "model")

    @staticmethod
    def empty_text() -> Decision:
        """Nothing to classify: a person looks at it."""
        return Decision("escalate", "escalate_to_human", "empty_text")
