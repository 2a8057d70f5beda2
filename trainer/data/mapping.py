"""Source-intent -> support-intent mappings: the presets of labels.md, or a user file."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml

from schemas.labels import INTENTS
from trainer.errors import DataError

FALLBACK_INTENT = "general_question"

PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "support": {
        "refund_request": ("cancel_reservation", "damaged_card"),
        "billing_issue": (
            "bill_due",
            "pay_bill",
            "min_payment",
            "bill_balance",
            "transfer",
            "balance",
            "spending_history",
            "transactions",
        ),
        "account_access": (
            "freeze_account",
            "pin_change",
            "account_blocked",
            "routing",
            "user_name",
            "change_user_name",
            "credit_limit_change",
        ),
        "technical_problem": ("report_fraud", "card_declined", "report_lost_card"),
    },
    # The notebook's own mapping; cancel_order is not a CLINC intent and matches nothing.
    "seed": {
        "refund_request": ("cancel_order", "damaged_card"),
        "billing_issue": ("bill_balance", "bill_due", "pay_bill", "transfer", "balance"),
        "account_access": ("freeze_account", "pin_change", "routing", "user_name"),
        "technical_problem": ("report_fraud", "transactions"),
        "general_question": ("order_status", "international_fees", "interest_rate"),
    },
}
PRESET_ABSENT_OK = {"seed": frozenset({"cancel_order"})}


class IntentMapping:
    """Maps a source intent to one of ours; anything unlisted (and oos) is general_question."""

    def __init__(self, name: str, groups: Mapping[str, Collection[str]]) -> None:
        self.name = name
        self.table: dict[str, str] = {}
        for ours, theirs in groups.items():
            if ours not in INTENTS:
                raise DataError(f"mapping {name}: {ours!r} is not one of {', '.join(INTENTS)}")
            for source_intent in theirs:
                self.table[source_intent] = ours

    def __call__(self, source_intent: str) -> str:
        return self.table.get(source_intent, FALLBACK_INTENT)

    def check_known(self, known: Collection[str], absent_ok: Collection[str] = ()) -> None:
        """Refuse a mapping that names intents the source does not have."""
        unknown = sorted(set(self.table) - set(known) - set(absent_ok))
        if unknown:
            raise DataError(
                f"mapping {self.name} names intents the data does not have: {', '.join(unknown)}"
            )


def load_mapping(spec: str) -> tuple[IntentMapping, frozenset[str]]:
    """A preset name or a JSON/YAML file {our_intent: [source intents]}; plus absent-ok names."""
    if spec in PRESETS:
        return IntentMapping(spec, PRESETS[spec]), PRESET_ABSENT_OK.get(spec, frozenset())
    path = Path(spec)
    if not path.exists():
        raise DataError(f"mapping {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    try:
        doc = (json.loads if path.suffix == ".json" else yaml.safe_load)(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"cannot parse mapping: {exc}", path=str(path)) from None
    if not isinstance(doc, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in doc.values()
    ):
        raise DataError("expected {our_intent: [source_intent, ...]}", path=str(path))
    return IntentMapping(str(path), doc), frozenset()
