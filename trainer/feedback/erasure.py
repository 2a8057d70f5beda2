"""``support-trainer feedback forget``: a customer's erasure request, applied to a data set.

The customer's corrected messages leave the store and dataset.jsonl, and sha256 of the
customer id joins the store's ``erased`` table: a later collect that fetches a message
of theirs drops its correction instead of adding it back. The manifest is recomputed;
its topic positions are kept as the last collect wrote them (forget reads no topic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.feedback import dataset
from trainer.feedback.errors import FeedbackError, StoreError
from trainer.feedback.store import STORE_FILE, Store, locked


def forget(directory: Path, customer_id: str) -> tuple[int, dict[str, Any]]:
    """Erase ``customer_id`` from the data set in ``directory``; returns the rows removed
    and the new manifest."""
    if not customer_id:
        raise FeedbackError("--customer-id is empty")
    if not (directory / STORE_FILE).exists():
        raise StoreError(f"{directory}: no {STORE_FILE}; is it a directory collect wrote?")
    with locked(directory), Store(directory / STORE_FILE) as db:
        positions = dataset.read_manifest(directory).get("positions", {})
        db.forget(customer_id)
        change, meta = dataset.publish(directory, db, positions)
        return change.removed, meta
