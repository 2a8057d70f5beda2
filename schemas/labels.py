"""The four heads and their label sets; list order is the head's class index (labels.md)."""

from __future__ import annotations

from typing import Final, Literal, get_args

Intent = Literal[
    "refund_request", "billing_issue", "account_access", "technical_problem", "general_question"
]
Urgency = Literal["low", "medium", "high"]
Sentiment = Literal["calm", "frustrated", "angry"]
INTENTS: Final[tuple[Intent, ...]] = get_args(Intent)
URGENCIES: Final[tuple[Urgency, ...]] = get_args(Urgency)
SENTIMENTS: Final[tuple[Sentiment, ...]] = get_args(Sentiment)
# The action head's labels, also the ``action`` of every routed result.
Action = Literal["auto_resolve", "request_more_info", "escalate_to_human"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)

HEADS: Final[dict[str, tuple[str, ...]]] = {
    "intent": INTENTS,
    "urgency": URGENCIES,
    "sentiment": SENTIMENTS,
    "action": ACTIONS,
}
