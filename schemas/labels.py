"""The four heads and their label sets; list order is the head's class index (labels.md)."""

from __future__ import annotations

from typing import Final, Literal, get_args

INTENTS: Final = (
    "refund_request",
    "billing_issue",
    "account_access",
    "technical_problem",
    "general_question",
)
URGENCIES: Final = ("low", "medium", "high")
SENTIMENTS: Final = ("calm", "frustrated", "angry")
# The action head's labels, also the ``action`` of every routed result.
Action = Literal["auto_resolve", "request_more_info", "escalate_to_human"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)

HEADS: Final[dict[str, tuple[str, ...]]] = {
    "intent": INTENTS,
    "urgency": URGENCIES,
    "sentiment": SENTIMENTS,
    "action": ACTIONS,
}
