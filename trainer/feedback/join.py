"""Corrections joined with the routed results they correct: the data set's rows. Pure.

A message is corrected any number of times; the latest correction wins, ordered by the
agent's ``Feedback.at`` and, on a tie, by the record's (partition, offset) on the feedback
topic. A correction whose message was never routed is *unmatched*: counted and listed,
never guessed at. The fingerprint is sha256 over the canonical rows sorted by message_id,
which are also the bytes of dataset.jsonl, so ``sha256sum dataset.jsonl`` checks it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from schemas.labels import HEADS
from schemas.learning import REVIEW_REASONS, Feedback
from schemas.messages import OutboundMessage

COLLECTION: Final = "feedback"
NO_REVIEW: Final = "none"  # review_reason of a correction that did not come from the queue
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

Row = dict[str, Any]


def micros(at: datetime) -> int:
    """An aware time as integer microseconds since the epoch: exact, and sortable in SQL."""
    return (at - _EPOCH) // _MICROSECOND


def rfc3339(at: datetime) -> str:
    """UTC, with a Z: one spelling per instant, so the fingerprint does not see offsets."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def customer_hash(customer_id: str) -> str:
    """What an erasure keeps of a customer id: enough to recognise it, not to read it."""
    return hashlib.sha256(customer_id.encode("utf-8")).hexdigest()


def is_erased(r: Routed, erased: frozenset[str]) -> bool:
    """The routed message belongs to a customer who asked to be forgotten."""
    return r.customer_id is not None and customer_hash(r.customer_id) in erased


@dataclass(frozen=True)
class Correction:
    """A valid Feedback record and where it sat on the feedback topic."""

    feedback: Feedback
    partition: int
    offset: int

    @property
    def message_id(self) -> str:
        return self.feedback.message_id

    @property
    def order(self) -> tuple[int, int, int]:
        """The latest-wins key: agent time, then the record's place in the topic."""
        return (micros(self.feedback.at), self.partition, self.offset)


@dataclass(frozen=True)
class Routed:
    """What the data set keeps of a routed result (only for corrected messages)."""

    message_id: str
    text: str
    customer_id: str | None
    classified_at: str
    model_version: str
    predicted: dict[str, str] | None  # per head, the label the model gave; None: not run

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Routed:
        return cls(**json.loads(text))


def routed_from(result: OutboundMessage) -> Routed:
    """The fields of a validated routed result that a row needs."""
    text = result.message.get("text")
    customer = result.message.get("customer_id")
    predicted = (
        None
        if result.predictions is None
        else {head: p.label for head, p in sorted(result.predictions.items())}
    )
    return Routed(
        message_id=result.message_id,
        text=text if isinstance(text, str) else "",
        customer_id=customer if isinstance(customer, str) else None,
        classified_at=result.timing.classified_at,
        model_version=result.model.version,
        predicted=predicted,
    )


def latest(corrections: Iterable[Correction]) -> tuple[dict[str, Correction], int]:
    """The winning correction per message, and how many records lost to a later one."""
    winners: dict[str, Correction] = {}
    seen = 0
    for c in corrections:
        seen += 1
        held = winners.get(c.message_id)
        if held is None or c.order > held.order:
            winners[c.message_id] = c
    return winners, seen - len(winners)


def row(c: Correction, r: Routed) -> Row:
    """One data-set row: trainer.data.records.read_labelled's keys plus where it came from."""
    given = c.feedback.labels.given()
    return {
        "message_id": c.message_id,
        "text": r.text,
        **{head: given.get(head) for head in HEADS},
        "collection": COLLECTION,
        "source": "",
        "customer_id": r.customer_id,
        "at": rfc3339(c.feedback.at),
        "classified_at": r.classified_at,
        "model_version": r.model_version,
        "agent_id": c.feedback.agent_id,
        "review_reason": c.feedback.review_reason,
        "predicted": r.predicted,
    }


@dataclass(frozen=True)
class Joined:
    rows: list[Row]  # sorted by message_id, one per message
    superseded: int  # records that lost to a later correction of their message
    unmatched: list[str]  # corrected, never routed (as far as the index knows)
    unavailable: list[str]  # routed, but the record is gone or unreadable
    blank_text: list[str]  # nothing for a text model to learn from
    erased: list[str]  # the customer asked to be forgotten


def join(
    corrections: Iterable[Correction],
    routed: Mapping[str, Routed | None],
    erased: frozenset[str] = frozenset(),
) -> Joined:
    """Rows from corrections and routed results (None: indexed but unavailable).

    ``erased`` holds customer_hash values: their messages never become rows.
    """
    winners, superseded = latest(corrections)
    rows: list[Row] = []
    unmatched, unavailable, blank, gone = [], [], [], []
    for message_id in sorted(winners):
        if message_id not in routed:
            unmatched.append(message_id)
            continue
        r = routed[message_id]
        if r is None:
            unavailable.append(message_id)
        elif is_erased(r, erased):
            gone.append(message_id)
        elif not r.text.strip():  # read_labelled refuses such a row, and rightly
            blank.append(message_id)
        else:
            rows.append(row(winners[message_id], r))
    return Joined(rows, superseded, unmatched, unavailable, blank, gone)


def line(r: Row) -> str:
    """The canonical text of a row: sorted keys, no spaces, UTF-8 as is, one line."""
    return json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def canonical(rows: Iterable[Row]) -> bytes:
    """dataset.jsonl's bytes: canonical lines sorted by message_id."""
    return "".join(line(r) for r in sorted(rows, key=lambda r: str(r["message_id"]))).encode()


def fingerprint(rows: Iterable[Row]) -> str:
    """sha256 over the canonical rows, whatever order they come in."""
    return hashlib.sha256(canonical(rows)).hexdigest()


def label_counts(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """Per head, how many rows carry each corrected label (every label listed, 0 included)."""
    counts = {head: Counter[str]() for head in HEADS}
    for r in rows:
        for head in HEADS:
            if r[head] is not None:
                counts[head][r[head]] += 1
    return {head: {label: counts[head][label] for label in HEADS[head]} for head in HEADS}


def review_reason_counts(rows: Iterable[Row]) -> dict[str, int]:
    """How many rows came from the review queue, per reason it queued them, and from outside."""
    reasons = Counter(r["review_reason"] or NO_REVIEW for r in rows)
    return {k: reasons[k] for k in (*REVIEW_REASONS, NO_REVIEW)}
