"""Heuristic urgency, sentiment and action labels, exactly as docs/labels.md specifies.

Keywords match case-insensitively on whole words; a multi-word keyword matches as
a phrase. (The notebook matched substrings, so "know" counted as "now".)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

URGENCY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "high": (
        "urgent",
        "emergency",
        "immediately",
        "asap",
        "now",
        "critical",
        "fraud",
        "stolen",
        "locked",
    ),
    "medium": ("soon", "quickly", "help", "issue", "problem", "wrong"),
    "low": ("question", "wondering", "curious", "information", "check"),
}
SENTIMENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "angry": ("terrible", "worst", "horrible", "ridiculous", "unacceptable", "pathetic", "stupid"),
    "frustrated": ("frustrated", "annoyed", "disappointed", "confused", "upset"),
    "calm": ("please", "thanks", "thank you", "appreciate", "kindly", "wondering"),
}
ALWAYS_URGENT_INTENTS = frozenset({"refund_request", "technical_problem"})


def _pattern(keywords: Iterable[str]) -> re.Pattern[str]:
    # \b on both sides makes "now" miss "know"; phrases tolerate any run of spaces.
    alternatives = (r"\s+".join(map(re.escape, kw.split())) for kw in keywords)
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


_URGENCY = {level: _pattern(kws) for level, kws in URGENCY_KEYWORDS.items()}
_SENTIMENT = {level: _pattern(kws) for level, kws in SENTIMENT_KEYWORDS.items()}


def urgency(text: str, intent: str) -> str:
    """low | medium | high from keywords, with refunds and technical problems never low."""
    if intent in ALWAYS_URGENT_INTENTS:
        return "high" if _URGENCY["high"].search(text) else "medium"
    for level in ("high", "medium", "low"):
        if _URGENCY[level].search(text):
            return level
    return "low"


def sentiment(text: str) -> str:
    """calm | frustrated | angry from keywords, then "!" or ALL CAPS means frustrated."""
    for level in ("angry", "frustrated", "calm"):
        if _SENTIMENT[level].search(text):
            return level
    if "!" in text or text.isupper():
        return "frustrated"
    return "calm"


def action(intent: str, urgency: str, sentiment: str) -> str:
    """The business rule that turns the other three labels into what to do."""
    if urgency == "high" or sentiment == "angry":
        return "escalate_to_human"
    if intent == "general_question" and sentiment == "calm":
        return "auto_resolve"
    if intent in {"billing_issue", "account_access"} and urgency == "medium":
        return "request_more_info"
    if intent in ALWAYS_URGENT_INTENTS:
        return "escalate_to_human"
    return "request_more_info"


def label_all(text: str, intent: str) -> dict[str, str]:
    """All four labels for a final (post-augmentation) text."""
    u = urgency(text, intent)
    s = sentiment(text)
    return {"intent": intent, "urgency": u, "sentiment": s, "action": action(intent, u, s)}
