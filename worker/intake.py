"""Intake: records in, batch items out (decode -> validate -> tokenize). Pure: no Kafka.

The worker's loop and ``support-worker classify`` build their items here (the bench
runs the loop itself), so a message is judged the same way wherever it enters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker import codec
from worker.model.protocol import Model


@dataclass(frozen=True)
class Item:
    """One consumed record on its way through a batch."""

    record: codec.Record
    outcome: codec.Accepted | codec.Rejected
    ids: list[int]  # token ids; empty when the model is not needed
    truncated: bool = False


def needs_model(outcome: codec.Accepted | codec.Rejected) -> bool:
    """Only accepted messages with some non-blank text go to the model."""
    return isinstance(outcome, codec.Accepted) and bool(outcome.text.strip())


def intake(records: Sequence[codec.Record], model: Model, max_text_chars: int) -> list[Item]:
    """One item per record, in order; every text the model needs in one tokenizer call."""
    outcomes = [codec.decode(r, max_text_chars) for r in records]
    wanted = [needs_model(o) for o in outcomes]
    texts = [o.text for o, w in zip(outcomes, wanted, strict=True) if w]  # type: ignore[union-attr]
    tokens = model.tokenize(texts)
    if len(tokens.ids) != len(texts):
        raise RuntimeError(f"the tokenizer returned {len(tokens.ids)} rows for {len(texts)}")
    it = iter(zip(tokens.ids, tokens.truncated, strict=True))
    items = []
    for record, outcome, w in zip(records, outcomes, wanted, strict=True):
        if w:
            ids, cut = next(it)
            items.append(Item(record, outcome, ids, cut))
        else:
            items.append(Item(record, outcome, []))
    return items
