"""Source-intent -> support-intent mappings: the built-in ones of labels.md, or a user file.

Not to be confused with ``trainer.presets.PRESETS`` (training setups).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml

from schemas.labels import INTENTS
from trainer.errors import DataError

FALLBACK_INTENT = "general_question"

# The built-in mappings, by the name --mapping (and DataSpec.banking77_mapping) take.
MAPPINGS: dict[str, dict[str, tuple[str, ...]]] = {
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
    # BANKING77's 77 categories (labels.md); everything unlisted is general_question.
    "banking77": {
        "refund_request": ("request_refund", "Refund_not_showing_up", "cancel_transfer"),
        "billing_issue": (
            "extra_charge_on_statement",
            "card_payment_fee_charged",
            "transfer_fee_charged",
            "exchange_charge",
            "top_up_by_card_charge",
            "cash_withdrawal_charge",
            "top_up_by_bank_transfer_charge",
            "card_payment_wrong_exchange_rate",
            "wrong_exchange_rate_for_cash_withdrawal",
            "transaction_charged_twice",
            "wrong_amount_of_cash_received",
            "balance_not_updated_after_bank_transfer",
            "balance_not_updated_after_cheque_or_cash_deposit",
            "pending_card_payment",
            "pending_transfer",
            "pending_top_up",
            "pending_cash_withdrawal",
            "transfer_not_received_by_recipient",
            "reverted_card_payment?",
            "top_up_reverted",
        ),
        "account_access": (
            "passcode_forgotten",
            "pin_blocked",
            "change_pin",
            "unable_to_verify_identity",
            "verify_my_identity",
            "why_verify_identity",
            "edit_personal_details",
            "terminate_account",
            "lost_or_stolen_phone",
        ),
        "technical_problem": (
            "card_not_working",
            "contactless_not_working",
            "virtual_card_not_working",
            "top_up_failed",
            "failed_transfer",
            "declined_card_payment",
            "declined_transfer",
            "declined_cash_withdrawal",
            "card_swallowed",
            "compromised_card",
            "lost_or_stolen_card",
            "direct_debit_payment_not_recognised",
            "card_payment_not_recognised",
            "cash_withdrawal_not_recognised",
        ),
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
# Source intents a built-in mapping may name although the data lacks them.
MAPPING_ABSENT_OK = {"seed": frozenset({"cancel_order"})}


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
    """A built-in mapping's name or a JSON/YAML file {our_intent: [source intents]}; plus
    absent-ok names."""
    if spec in MAPPINGS:
        return IntentMapping(spec, MAPPINGS[spec]), MAPPING_ABSENT_OK.get(spec, frozenset())
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"mapping {spec!r} is neither a built-in mapping ({', '.join(MAPPINGS)}) nor a file"
        )
    try:
        doc = (json.loads if path.suffix == ".json" else yaml.safe_load)(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"cannot parse mapping: {exc}", path=str(path)) from None
    if not isinstance(doc, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in doc.values()
    ):
        raise DataError("expected {our_intent: [source_intent, ...]}", path=str(path))
    return IntentMapping(str(path), doc), frozenset()
