"""Intent mappings: the built-in ones, user files, and unknown intents named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data.mapping import load_mapping
from trainer.errors import DataError


def test_support_mapping_follows_labels_md() -> None:
    mapping, _ = load_mapping("support")
    assert mapping("card_declined") == "technical_problem"
    assert mapping("transactions") == "billing_issue"
    assert mapping("oos") == "general_question"
    assert mapping("translate") == "general_question"


def test_seed_mapping_keeps_the_notebook_one() -> None:
    mapping, absent_ok = load_mapping("seed")
    assert mapping("transactions") == "technical_problem"
    assert "cancel_order" in absent_ok


def test_user_file_with_unknown_source_intents_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"refund_request": ["damaged_card", "made_up", "also_fake"]}))
    mapping, absent_ok = load_mapping(str(path))
    with pytest.raises(DataError, match="does not have: also_fake, made_up"):
        mapping.check_known({"damaged_card", "oos"}, absent_ok)


def test_user_file_with_an_unknown_target_intent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("shipping: [order_status]\n")
    with pytest.raises(DataError, match="'shipping' is not one of"):
        load_mapping(str(path))
