"""The data set's files: written from the store, idempotent, and erasable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from schemas.messages import OutboundMessage
from tests.unit.trainer.feedback.builders import correction, result
from trainer.data.records import read_labelled
from trainer.feedback import dataset
from trainer.feedback.erasure import forget
from trainer.feedback.errors import StoreError
from trainer.feedback.join import routed_from
from trainer.feedback.records import IndexEntry
from trainer.feedback.store import STORE_FILE, Store

POSITIONS: dict[str, dataset.Positions] = {"feedback": {"support.feedback": {"0": 4}}}


def filled(directory: Path) -> Store:
    """A store with three corrected messages (two customers) and one unmatched correction."""
    db = Store(directory / STORE_FILE)
    db.bind_group("g")
    owners = {"m1": "alice", "m2": "bob", "m3": "alice"}
    db.index(
        [IndexEntry(mid, "esc", 0, i, 1, 1) for i, mid in enumerate(owners)], 0, {("esc", 0): 3}
    )
    chunk = [correction(mid, offset=i) for i, mid in enumerate([*owners, "ghost"])]
    db.apply_feedback("support.feedback", chunk, [], {0: 4})
    db.save_routed(
        [
            (
                e,
                routed_from(
                    OutboundMessage.model_validate(
                        result(e.message_id, customer_id=owners[e.message_id])
                    )
                ),
            )
            for e in db.wanted()
        ]
    )
    return db


def test_publish_writes_the_rows_and_a_manifest_that_fingerprints_them(tmp_path: Path) -> None:
    with filled(tmp_path) as db:
        change, meta = dataset.publish(tmp_path, db, POSITIONS)
    data = (tmp_path / dataset.DATASET_FILE).read_bytes()
    assert change == dataset.Change(added=3, changed=0, removed=0)
    assert meta == json.loads((tmp_path / dataset.MANIFEST_FILE).read_text())
    assert meta["fingerprint"] == hashlib.sha256(data).hexdigest()
    counts = meta["counts"]
    assert (counts["feedback_read"], counts["valid"], counts["invalid"]) == (4, 4, 0)
    assert (counts["examples"], counts["unmatched"]) == (3, 1)
    assert meta["unmatched_message_ids"] == ["ghost"]
    assert counts["labels"]["intent"]["billing_issue"] == 3
    assert meta["group"] == "g"
    assert meta["positions"] == POSITIONS
    assert len(read_labelled(tmp_path / dataset.DATASET_FILE)[0]) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_publishing_again_changes_nothing(tmp_path: Path) -> None:
    with filled(tmp_path) as db:
        _, first = dataset.publish(tmp_path, db, POSITIONS)
        data = (tmp_path / dataset.DATASET_FILE).read_bytes()
        change, again = dataset.publish(tmp_path, db, POSITIONS)
    assert change == dataset.Change(0, 0, 0)
    assert again == first
    assert (tmp_path / dataset.DATASET_FILE).read_bytes() == data


def test_forget_removes_a_customers_rows_and_keeps_the_positions(tmp_path: Path) -> None:
    with filled(tmp_path) as db:
        dataset.publish(tmp_path, db, POSITIONS)
    removed, meta = forget(tmp_path, "alice")
    assert removed == 2
    rows = [json.loads(line) for line in (tmp_path / dataset.DATASET_FILE).read_text().splitlines()]
    assert [r["message_id"] for r in rows] == ["m2"]
    assert meta["counts"]["examples"] == 1 and meta["counts"]["erased"] == 2
    assert meta["positions"] == POSITIONS
    assert forget(tmp_path, "alice")[0] == 0


def test_forget_needs_a_collected_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no collect\.sqlite"):
        forget(tmp_path, "alice")
