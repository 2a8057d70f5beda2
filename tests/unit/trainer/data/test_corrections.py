"""The agents' corrections: reading the data set, the time split fine-tune and compare
share, and which labels a fine-tune trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.trainer import corrections_data
from trainer.data import corrections
from trainer.data.corrections import split_by_time, validation_part
from trainer.errors import DataError


def _set(tmp_path: Path, n: int) -> corrections.CorrectionSet:
    rows = [
        corrections_data.row(i, f"where is my refund {i}", intent="refund_request")
        for i in range(n)
    ]
    loaded, skipped = corrections.read(corrections_data.write(tmp_path / "fb", rows))
    assert skipped == 0
    return loaded


def test_the_newest_share_by_feedback_time_is_held_back(tmp_path: Path) -> None:
    loaded = _set(tmp_path, 10)
    split = split_by_time(loaded.rows, 0.2)
    assert [c.message_id for c in split.held_back] == ["m0008", "m0009"]
    assert len(split.usable) == 8
    assert split.trained_until is not None
    assert all(c.at < split.held_back[0].at for c in split.usable)


def test_time_not_file_order_decides(tmp_path: Path) -> None:
    # m0000 is corrected last although it comes first in the file.
    rows = [
        corrections_data.row(0, "late one", minutes=500, intent="billing_issue"),
        *(corrections_data.row(i, f"early {i}", intent="billing_issue") for i in range(1, 5)),
    ]
    loaded, _ = corrections.read(corrections_data.write(tmp_path / "fb", rows))
    assert [c.message_id for c in split_by_time(loaded.rows, 0.2).held_back] == ["m0000"]


def test_the_share_rounds_up_ties_break_by_message_id_and_zero_holds_nothing(
    tmp_path: Path,
) -> None:
    rows = [
        corrections_data.row(i, f"same time {i}", minutes=0, intent="billing_issue")
        for i in range(3)
    ]
    loaded, _ = corrections.read(corrections_data.write(tmp_path / "fb", rows))
    assert [c.message_id for c in split_by_time(loaded.rows, 0.2).held_back] == ["m0002"]
    assert split_by_time(loaded.rows, 0.0).held_back == []
    with pytest.raises(DataError, match="holdout share"):
        split_by_time(loaded.rows, 1.0)


def test_a_row_stays_on_its_side_of_validation_whatever_else_the_set_holds(tmp_path: Path) -> None:
    loaded = _set(tmp_path, 200)
    train, val = validation_part(loaded.rows)
    assert 20 < len(val) < 60 and len(train) + len(val) == 200
    _, val_of_half = validation_part(loaded.rows[:100])
    assert {c.message_id for c in val_of_half} <= {c.message_id for c in val}


def test_given_heads_are_kept_the_rest_filled_by_the_rules_only_with_an_intent(
    tmp_path: Path,
) -> None:
    rows = [
        corrections_data.row(
            0, "this is ridiculous, refund me", intent="refund_request", urgency="low"
        ),
        corrections_data.row(1, "this is ridiculous", urgency="high"),
    ]
    loaded, _ = corrections.read(corrections_data.write(tmp_path / "fb", rows))
    with_intent, without = loaded.rows
    assert with_intent.heads_given() == ("intent", "urgency")
    assert with_intent.given.sentiment is None  # compare scores only what the agent gave
    filled = with_intent.training_example()
    assert (filled.intent, filled.urgency) == ("refund_request", "low")  # the agent's
    assert (filled.sentiment, filled.action) == ("angry", "escalate_to_human")  # the rules'
    assert filled.collection == "feedback"
    masked = without.training_example()
    assert (masked.intent, masked.urgency, masked.sentiment, masked.action) == (
        None,
        "high",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"at": "2026-03-01T09:00:00"}, "not an RFC 3339 time with an offset"),
        ({"intent": "complaint"}, "unknown intent label 'complaint'"),
        ({"intent": None}, "no head labelled"),
        ({"message_id": ""}, "missing or empty (field 'message_id')"),  # sorts first: line 1
        ({"text": " "}, "missing or empty text"),
    ],
)
def test_a_bad_row_is_named_by_line(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    rows = [corrections_data.row(0, "fine", intent="billing_issue")]
    rows.append({**corrections_data.row(1, "bad", intent="billing_issue"), **change})
    directory = corrections_data.write(tmp_path / "fb", rows)
    with pytest.raises(DataError, match=r"dataset.jsonl:[12]: ") as exc:
        corrections.read(directory)
    assert message in str(exc.value)
    loaded, skipped = corrections.read(directory, skip_invalid=True)
    assert skipped == 1 and len(loaded.rows) == 1


def test_one_row_per_message_and_a_manifest_with_a_fingerprint(tmp_path: Path) -> None:
    row = corrections_data.row(0, "twice", intent="billing_issue")
    directory = corrections_data.write(tmp_path / "fb", [row, row])
    with pytest.raises(DataError, match="message 'm0000' again"):
        corrections.read(directory)
    (directory / "manifest.json").write_text(json.dumps({"counts": {}}))
    with pytest.raises(DataError, match="field 'fingerprint'"):
        corrections.read(directory)
