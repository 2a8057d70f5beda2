"""A deterministic generator of support messages for every intent (offline demo, tests)."""

from __future__ import annotations

import random

TEMPLATES: dict[str, tuple[str, ...]] = {
    "refund_request": (
        "i want a refund for my {item}",
        "please cancel my {booking} and give me my money back",
        "my {item} arrived damaged, i need a replacement",
        "how do i get a refund for the {item} i bought",
        "cancel my {booking} right away",
        "i was charged for a {booking} i cancelled, i want it reversed",
        "can i return this {item} for a full refund",
        "the {item} is broken, send a new one",
    ),
    "billing_issue": (
        "why is my bill so high this {period}",
        "i need to pay my {bill} bill",
        "what is the balance on my {account} account",
        "there is an extra fee on my {period} statement",
        "transfer {amount} from {account} to savings",
        "when is my {bill} payment due",
        "show me the charges on my {account} account",
        "what is the minimum payment on my card this {period}",
    ),
    "account_access": (
        "i can't log into my {account} account",
        "i forgot my password for the app",
        "how do i change my pin",
        "my account is locked after too many attempts",
        "please freeze my {account} account",
        "i need to reset my user name",
        "the app says my account is blocked",
        "how do i verify my identity to get back in",
    ),
    "technical_problem": (
        "my card was declined at the {place}",
        "i think someone stole my card",
        "there is a fraudulent charge from {place}",
        "the app keeps crashing when i open {feature}",
        "i get an error when i try to use {feature}",
        "i lost my card at the {place}",
        "the website shows error {code} on {feature}",
        "my card stopped working at the {place}",
    ),
    "general_question": (
        "what are your opening hours on {day}",
        "do you have a branch near the {place}",
        "how do i contact support",
        "what is the interest rate on savings",
        "can you tell me about your {feature} feature",
        "is there a mobile app i can download",
        "what time is it in {city}",
        "how do i update my mailing address",
    ),
}
SLOTS: dict[str, tuple[str, ...]] = {
    "item": ("headphones", "jacket", "phone case", "blender", "order", "subscription"),
    "booking": ("flight", "hotel booking", "reservation", "order", "membership"),
    "period": ("month", "week", "quarter", "cycle"),
    "bill": ("electric", "water", "phone", "internet", "credit card"),
    "account": ("checking", "savings", "business", "joint"),
    "amount": ("$50", "$200", "100 dollars", "$1,000"),
    "place": ("gas station", "grocery store", "airport", "restaurant", "mall"),
    "feature": ("payments", "the dashboard", "statements", "transfers", "notifications"),
    "code": ("500", "403", "E42", "timeout"),
    "day": ("sunday", "monday", "holidays", "saturday"),
    "city": ("paris", "tokyo", "new york", "sydney"),
}
SPLIT_SIZES = {"train": 1.0, "val": 0.2, "test": 0.2}


def generate(per_intent: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """Rows (text, intent) per split; the intent is already one of ours."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for split, share in SPLIT_SIZES.items():
        rng = random.Random(f"synthetic:{seed}:{split}")
        n = max(1, round(per_intent * share))
        rows[split] = [
            (_fill(rng.choice(templates), rng), intent)
            for intent, templates in TEMPLATES.items()
            for _ in range(n)
        ]
        rng.shuffle(rows[split])
    return rows


def _fill(template: str, rng: random.Random) -> str:
    values = {slot: rng.choice(options) for slot, options in SLOTS.items()}
    return template.format(**values)
