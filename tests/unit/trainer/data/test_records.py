"""User data files: every bad line is named by file, line and field, or counted when skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data.records import read_labelled
from trainer.errors import DataError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_labels_are_filled_by_the_heuristics(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "d.jsonl",
        '{"text": "my card was stolen!", "intent": "technical_problem"}\n'
        '{"text": "hello", "sentiment": "angry"}\n',
    )
    (a, b), skipped = read_labelled(path)
    assert (a.urgency, a.sentiment, a.action) == ("high", "frustrated", "escalate_to_human")
    # no intent: the intent-dependent rules cannot run, so those labels stay unknown
    assert (b.intent, b.urgency, b.sentiment, b.action) == (None, None, "angry", None)
    assert skipped == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"text": "ok"}\n{"intent": "billing_issue"}\n',
            r"d.jsonl:2: missing or empty text \(field 'text'\)",
        ),
        (
            '{"text": "ok", "urgency": "extreme"}\n',
            r"d.jsonl:1: unknown urgency label 'extreme'.*\(field 'urgency'\)",
        ),
        ('{"text": "ok"}\n{"text": "broken\n', r"d.jsonl:2: not valid JSON"),
        ('["text"]\n', r"d.jsonl:1: expected a JSON object"),
        ("", r"d.jsonl: no examples"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_labelled(_write(tmp_path, "d.jsonl", content))


def test_skip_invalid_counts_what_it_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.jsonl", '{"text": "a"}\n{"nope": 1}\n{"text": "b"}\nnot json\n')
    examples, skipped = read_labelled(path, skip_invalid=True)
    assert [e.text for e in examples] == ["a", "b"]
    assert skipped == 2


def test_csv_with_optional_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "text,intent\nwhere is my refund,refund_request\nhi,\n")
    (a, b), _ = read_labelled(path)
    assert a.intent == "refund_request" and a.action == "escalate_to_human"
    assert b.intent is None


def test_csv_without_text_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"d.csv:1: CSV header has no 'text' column"):
        read_labelled(_write(tmp_path, "d.csv", "message,intent\nhi,\n"))
