"""Training rows that anchor each intent to its definition in docs/labels.md.

A model fitted to one collection learns that collection's phrasings of an intent, and
the intent boundaries its mapping happens to draw: CLINC has no refund or fee-dispute
intent, so a CLINC-only model files "I want my money back" under general_question.
The definitions name what each intent covers; these rows put every named term in a
few neutral carrier sentences, so the training set says it too. Terms are quoted
from the definitions, nothing else; the rows are noised and labeled like any other.
"""

from __future__ import annotations

import random

# Each term verbatim from labels.md's definitions (or the intent's own name), in the
# singular or with an article where a sentence needs one.
TERMS: dict[str, tuple[str, ...]] = {
    "refund_request": (
        "money back",
        "a refund",
        "cancel a purchase",
        "reverse a purchase",
        "cancel a booking",
        "reverse a booking",
        "cancel a charge",
        "reverse a charge",
        "replace a damaged item",
    ),
    "billing_issue": (
        "a payment",
        "a bill",
        "my balance",
        "a fee",
        "a charge",
        "a transfer",
        "my statement",
    ),
    "account_access": (
        "login",
        "my password",
        "my PIN",
        "a locked account",
        "a frozen account",
        "a blocked account",
        "my identity",
        "my user name",
        "account management",
    ),
    "technical_problem": (
        "something broken",
        "something failing",
        "something insecure",
        "a declined card",
        "fraud",
        "a lost card",
        "a stolen card",
        "an error",
    ),
    "general_question": ("an information request", "a FAQ", "everything else"),
}
# Intent-neutral carriers: the same sentences for every intent, so only the term decides.
CARRIERS = (
    "{term}",
    "i need help with {term}",
    "i have a question about {term}",
    "it is about {term}",
    "can you help me with {term}",
    "i am writing about {term}",
    "what do i do about {term}",
    "my message is about {term}",
)
COPIES = {"train": 3}  # anchors train only: no val or test rows


def generate(seed: int) -> dict[str, list[tuple[str, str]]]:
    """Rows (text, intent) for the train split; noise is added by the caller, per row."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for split, copies in COPIES.items():
        rows[split] = [
            (carrier.format(term=term), intent)
            for intent, terms in TERMS.items()
            for term in terms
            for carrier in CARRIERS
            for _ in range(copies)
        ]
        random.Random(f"definitions:{seed}:{split}").shuffle(rows[split])
    return rows
