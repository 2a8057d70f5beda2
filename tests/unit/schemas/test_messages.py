"""The wire contracts: inbound validation rules, and the committed JSON Schema files."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.generate import MODELS, OUT_DIR, render
from schemas.messages import InboundMessage


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_json_schema_matches_the_models(name: str) -> None:
    committed = (OUT_DIR / name).read_text()
    assert committed == render(MODELS[name]), f"run `python -m schemas.generate` ({name})"


def test_unknown_fields_pass_through() -> None:
    msg = InboundMessage.model_validate({"message_id": "m1", "text": "hi", "vip": True})
    assert msg.model_dump()["vip"] is True


@pytest.mark.parametrize(
    "value",
    [
        {"text": "hi"},
        {"message_id": 7, "text": "hi"},
        {"message_id": "", "text": "hi"},
        {"message_id": "x" * 129, "text": "hi"},
        {"message_id": "m", "text": 3},
        {"message_id": "m"},
        {"message_id": "m", "text": "hi", "created_at": "2026-11-24T10:00:00"},  # no offset
        {"message_id": "m", "text": "hi", "metadata": {"a": {"nested": 1}}},
        {"message_id": "m", "text": "hi", "metadata": {f"k{i}": i for i in range(33)}},
        {"message_id": "m", "text": "hi", "metadata": {"k": "v" * 1025}},
    ],
)
def test_invalid_inbound_values_are_refused(value: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InboundMessage.model_validate(value)


def test_a_full_valid_message() -> None:
    msg = InboundMessage.model_validate(
        {
            "message_id": "m",
            "text": "",
            "conversation_id": "c",
            "created_at": "2026-11-24T10:00:00Z",
            "metadata": {"tier": "gold", "n": 3, "ok": True},
        }
    )
    assert msg.created_at is not None and msg.metadata == {"tier": "gold", "n": 3, "ok": True}
