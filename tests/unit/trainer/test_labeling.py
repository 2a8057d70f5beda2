"""The heuristic labels against the worked cases of docs/labels.md."""

from __future__ import annotations

import pytest

from trainer.labeling import action, label_all, sentiment, urgency


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i want to know my balance", "low"),  # "now" must not match inside "know"
        ("i need my balance now", "high"),
        ("this was helpful, what is my balance", "low"),  # "help" must not match "helpful"
        ("can you help with my balance", "medium"),
        ("URGENT: check my balance", "high"),  # case-insensitive
        ("i have a question", "low"),
        ("what time is it", "low"),  # nothing matches: low
    ],
)
def test_urgency_whole_words(text: str, expected: str) -> None:
    assert urgency(text, "billing_issue") == expected


def test_refunds_and_technical_problems_are_never_low() -> None:
    assert urgency("i have a question about my card", "technical_problem") == "medium"
    assert urgency("my card was stolen", "refund_request") == "high"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("this is the worst bank", "angry"),
        ("i am so annoyed", "frustrated"),
        ("thank you for the help", "calm"),  # a multi-word keyword as a phrase
        ("thank   you", "calm"),
        ("where is my card!", "frustrated"),  # "!" with no keyword
        ("WHERE IS MY CARD", "frustrated"),  # ALL CAPS with no keyword
        ("Where Is My Card", "calm"),
        ("WORST SERVICE, THANKS", "angry"),  # angry wins over calm
        ("PLEASE HELP", "calm"),  # a calm keyword wins over ALL CAPS
        ("unacceptableness", "calm"),  # not a whole word
    ],
)
def test_sentiment(text: str, expected: str) -> None:
    assert sentiment(text) == expected


@pytest.mark.parametrize(
    ("intent", "urg", "sent", "expected"),
    [
        ("general_question", "high", "calm", "escalate_to_human"),
        ("general_question", "low", "angry", "escalate_to_human"),
        ("general_question", "low", "calm", "auto_resolve"),
        ("general_question", "medium", "frustrated", "request_more_info"),
        ("billing_issue", "medium", "calm", "request_more_info"),
        ("account_access", "low", "frustrated", "request_more_info"),
        ("refund_request", "medium", "calm", "escalate_to_human"),
        ("technical_problem", "medium", "frustrated", "escalate_to_human"),
    ],
)
def test_action_rule(intent: str, urg: str, sent: str, expected: str) -> None:
    assert action(intent, urg, sent) == expected


def test_label_all_reads_the_final_text() -> None:
    assert label_all("I can't believe my card was declined NOW!", "technical_problem") == {
        "intent": "technical_problem",
        "urgency": "high",
        "sentiment": "frustrated",
        "action": "escalate_to_human",
    }
