"""The agents' corrections as a data set: reading DIR/dataset.jsonl and DIR/manifest.json,
and the one split by feedback time that fine-tuning and compare share.

A row is one routed message with the labels an agent gave it (null for a head the agent
left alone), the feedback time ``at`` and where the message came from. A fine-tune trains
on the older part and never sees the newest share, which compare scores both models on:
the newest traffic is the closest stand-in for tomorrow's.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from schemas.labels import HEADS
from trainer.data.records import Example, given_labels, jsonl_rows, row_text, with_heuristics
from trainer.errors import DataError

DATASET_FILE: Final = "dataset.jsonl"
MANIFEST_FILE: Final = "manifest.json"
COLLECTION: Final = "feedback"
# The newest fifth by feedback time is held back for compare (support-trainer train
# --holdout-share and compare --holdout-share change it).
HOLDOUT_SHARE: Final = 0.2
# Of the corrections a fine-tune may use, this share (picked by message id, so the same
# message is on the same side whatever else the data set holds) validates and calibrates
# instead of training: temperatures fitted on the collections alone would not know the
# traffic's shift.
VALIDATION_SHARE: Final = 0.2


@dataclass(frozen=True)
class Correction:
    """One message with the labels an agent gave it."""

    message_id: str
    at: datetime  # feedback time, timezone-aware
    given: Example  # the agent's labels only; a head the agent did not give is None
    model_version: str
    review_reason: str | None

    def heads_given(self) -> tuple[str, ...]:
        return tuple(h for h in HEADS if self.given.label(h) is not None)

    def training_example(self) -> Example:
        """The agent's labels, and where the intent is known the label spec's rules for
        the heads the agent left alone; without an intent those stay unknown (masked)."""
        ex = self.given
        if ex.intent is None:
            return ex
        return with_heuristics(
            ex.text,
            ex.intent,
            ex.source,
            ex.collection,
            urgency=ex.urgency,
            sentiment=ex.sentiment,
            action=ex.action,
        )


@dataclass(frozen=True)
class CorrectionSet:
    """The data set's rows, oldest first, and its manifest's fingerprint and counts."""

    path: Path
    fingerprint: str
    counts: dict[str, Any]
    rows: list[Correction]


@dataclass(frozen=True)
class TimeSplit:
    """The older rows (a fine-tune may use them) and the newest share (held back)."""

    usable: list[Correction]
    held_back: list[Correction]

    @property
    def trained_until(self) -> datetime | None:
        return self.usable[-1].at if self.usable else None


def read(directory: Path, *, skip_invalid: bool = False) -> tuple[CorrectionSet, int]:
    """The data set in ``directory`` and how many invalid lines were skipped."""
    manifest = _manifest(directory / MANIFEST_FILE)
    path = directory / DATASET_FILE
    if not path.exists():
        raise DataError("file not found", path=str(path))
    rows: list[Correction] = []
    seen: dict[str, int] = {}
    skipped = 0
    for line, row in jsonl_rows(path):
        try:
            correction = _correction(row, path, line)
            if correction.message_id in seen:
                raise DataError(
                    f"message {correction.message_id!r} again (first on line "
                    f"{seen[correction.message_id]}); the data set holds one row per message",
                    path=str(path),
                    line=line,
                    field="message_id",
                )
        except DataError:
            if not skip_invalid:
                raise
            skipped += 1
            continue
        seen[correction.message_id] = line
        rows.append(correction)
    if not rows:
        raise DataError("no corrections (empty file, or every line invalid)", path=str(path))
    rows.sort(key=lambda c: (c.at, c.message_id))
    return CorrectionSet(directory, manifest["fingerprint"], manifest["counts"], rows), skipped


def split_by_time(rows: list[Correction], holdout_share: float = HOLDOUT_SHARE) -> TimeSplit:
    """Hold back the newest ``holdout_share`` of ``rows`` by feedback time (at least one
    row when the share is above 0); ties in time are broken by message id, so the cut is
    the same on every run."""
    if not 0 <= holdout_share < 1:
        raise DataError(f"the holdout share must be in [0, 1), got {holdout_share}")
    ordered = sorted(rows, key=lambda c: (c.at, c.message_id))
    held = math.ceil(len(ordered) * holdout_share)
    return TimeSplit(ordered[: len(ordered) - held], ordered[len(ordered) - held :])


def validation_part(
    rows: list[Correction], share: float = VALIDATION_SHARE
) -> tuple[list[Correction], list[Correction]]:
    """(train, validation): about ``share`` of the rows validate, chosen by a hash of the
    message id."""
    train: list[Correction] = []
    validation: list[Correction] = []
    for row in rows:
        digest = hashlib.sha256(row.message_id.encode()).digest()
        (validation if int.from_bytes(digest[:4], "big") < share * 2**32 else train).append(row)
    return train, validation


def _manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError("file not found", path=str(path))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", path=str(path)) from None
    if not isinstance(raw, dict):
        raise DataError("expected a JSON object", path=str(path))
    if not isinstance(raw.get("fingerprint"), str) or not raw["fingerprint"]:
        raise DataError("missing or empty", path=str(path), field="fingerprint")
    if not isinstance(raw.get("counts"), dict):
        raise DataError("missing or not an object", path=str(path), field="counts")
    return raw


def _correction(row: Any, path: Path, line: int) -> Correction:
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError("expected a JSON object", path=str(path), line=line)
    text = row_text(row, path, line)
    labels = given_labels(row, path, line)
    if not any(labels.values()):
        raise DataError("no head labelled", path=str(path), line=line, field="intent")
    message_id = row.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise DataError("missing or empty", path=str(path), line=line, field="message_id")
    given = Example(
        text,
        labels["intent"],
        labels["urgency"],
        labels["sentiment"],
        labels["action"],
        str(row.get("source") or ""),
        str(row.get("collection") or COLLECTION),
    )
    reason = row.get("review_reason")
    return Correction(
        message_id,
        _time(row.get("at"), path, line),
        given,
        str(row.get("model_version") or ""),
        reason if isinstance(reason, str) else None,
    )


def _time(value: Any, path: Path, line: int) -> datetime:
    """An RFC 3339 time with its offset: times without one cannot be ordered safely."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise DataError(
            f"not an RFC 3339 time with an offset: {value!r}", path=str(path), line=line, field="at"
        )
    return at
