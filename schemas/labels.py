"""The four heads and their label sets; list order is the head's class index (labels.md)."""

from __future__ import annotations

from typing import Final

INTENTS: Final = (
    "refund_request",
    "billing_issue",
    "account_access",
    "technical_problem",
    "general_question",
)
URGENCIES: Final = ("low", "medium", "high")
SENTIMENTS: Final = ("calm", "frustrated", "angry")
ACTIONS: Final = ("auto_resolve", "request_more_info", "escalate_to_human")

HEADS: Final[dict[str, tuple[str, ...]]] = {
    "intent": INTENTS,
    "urgency": URGENCIES,
    "sentiment": SENTIMENTS,
    "action": ACTIONS,
}
