"""The labelled example and its JSONL/CSV reader with line-precise errors."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.labels import HEADS
from trainer import labeling
from trainer.errors import DataError


@dataclass(frozen=True)
class Example:
    """One message with its four labels; a label is None when unknown (masked in training)."""

    text: str
    intent: str | None
    urgency: str | None
    sentiment: str | None
    action: str | None
    source: str = ""  # the source collection's own intent or category, when known
    collection: str = ""  # which data set it came from (clinc, banking77, a file's name)

    def label(self, head: str) -> str | None:
        value: str | None = getattr(self, head)
        return value

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def with_heuristics(
    text: str, intent: str | None, source: str = "", collection: str = "", **given: str | None
) -> Example:
    """Fill the labels the caller did not give from the rules (needs intent for two of them)."""
    sentiment = given.get("sentiment") or labeling.sentiment(text)
    urgency = given.get("urgency") or (labeling.urgency(text, intent) if intent else None)
    action = given.get("action") or (
        labeling.action(intent, urgency, sentiment) if intent and urgency else None
    )
    return Example(text, intent, urgency, sentiment, action, source, collection)


def read_labelled(path: Path, *, skip_invalid: bool = False) -> tuple[list[Example], int]:
    """Read JSONL or CSV; returns the examples and how many invalid lines were skipped."""
    if not path.exists():
        raise DataError("file not found", path=str(path))
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else jsonl_rows(path)
    examples: list[Example] = []
    skipped = 0
    for line, row in rows:
        try:
            examples.append(_example(row, path, line))
        except DataError:
            if not skip_invalid:
                raise
            skipped += 1
    if not examples:
        raise DataError("no examples (empty file, or every line invalid)", path=str(path))
    return examples, skipped


def jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) per non-blank line; a DataError in place of bad JSON."""
    with path.open(encoding="utf-8") as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield line, json.loads(raw)
            except json.JSONDecodeError as exc:
                yield line, DataError(f"not valid JSON: {exc.msg}", path=str(path), line=line)


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise DataError("CSV header has no 'text' column", path=str(path), line=1)
        for row in reader:
            # reader.line_num is the physical line the row ended on (1 = header)
            yield reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}


def _example(row: Any, path: Path, line: int) -> Example:
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError("expected a JSON object", path=str(path), line=line)
    text = row_text(row, path, line)
    given = given_labels(row, path, line)
    intent = given.pop("intent")
    source, collection = str(row.get("source", "")), str(row.get("collection", ""))
    return with_heuristics(text, intent, source, collection, **given)


def row_text(row: dict[str, Any], path: Path, line: int) -> str:
    """The row's non-empty text, or a DataError naming the line."""
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError("missing or empty text", path=str(path), line=line, field="text")
    return text


def given_labels(row: dict[str, Any], path: Path, line: int) -> dict[str, str | None]:
    """The row's label per head (None where absent or null), each checked against its set."""
    given: dict[str, str | None] = {}
    for head, labels in HEADS.items():
        value = row.get(head)
        if value is not None and value not in labels:
            raise DataError(
                f"unknown {head} label {value!r}; expected one of {', '.join(labels)}",
                path=str(path),
                line=line,
                field=head,
            )
        given[head] = value
    return given


def write_jsonl(path: Path, examples: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
