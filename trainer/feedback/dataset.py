"""The data set's files: DIR/dataset.jsonl and DIR/manifest.json, each replaced atomically.

dataset.jsonl is ``join.canonical(rows)``, so its sha256 is the manifest's fingerprint.
A reader never sees half a file: each is written to a temporary file beside it, synced,
and renamed over the old one (and the directory synced, so the rename survives a crash).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from trainer.feedback import join
from trainer.feedback.store import Store

DATASET_FILE: Final = "dataset.jsonl"
MANIFEST_FILE: Final = "manifest.json"
MANIFEST_VERSION: Final = 1
# The manifest lists this many unmatched message ids; the count covers them all.
LISTED_UNMATCHED: Final = 100

Positions = dict[str, dict[str, int]]  # topic -> partition (as text, JSON keys) -> offset


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class Change:
    """How a new data set differs from the one on disk, by message."""

    added: int
    changed: int
    removed: int


def digests(directory: Path) -> dict[str, str]:
    """message_id -> sha256 of its line, for the dataset.jsonl on disk (empty if none)."""
    path = directory / DATASET_FILE
    if not path.exists():
        return {}
    out = {}
    with path.open(encoding="utf-8") as fh:
        for text in fh:
            if text.strip():
                out[str(json.loads(text)["message_id"])] = _digest(text)
    return out


def change(before: dict[str, str], rows: list[join.Row]) -> Change:
    after = {str(r["message_id"]): _digest(join.line(r)) for r in rows}
    added = sum(1 for m in after if m not in before)
    changed = sum(1 for m, d in after.items() if m in before and before[m] != d)
    return Change(added, changed, sum(1 for m in before if m not in after))


def _digest(text: str) -> str:
    return hashlib.sha256(text.rstrip("\n").encode()).hexdigest()


def manifest(
    joined: join.Joined,
    counters: dict[str, int],
    group: str | None,
    positions: dict[str, Positions],
) -> dict[str, Any]:
    """What the data set holds and how it was made; recomputable from the store alone."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "dataset": DATASET_FILE,
        "fingerprint": join.fingerprint(joined.rows),
        "counts": {
            "feedback_read": counters["feedback_read"],
            "valid": counters["feedback_valid"],
            "invalid": counters["feedback_invalid"],
            "superseded": counters["feedback_superseded"],
            "unmatched": len(joined.unmatched),
            "unavailable": len(joined.unavailable),
            "blank_text": len(joined.blank_text),
            "erased": len(joined.erased) + counters["erased_dropped"] + counters["erased_removed"],
            "examples": len(joined.rows),
            "labels": join.label_counts(joined.rows),
            "review_reason": join.review_reason_counts(joined.rows),
            "routed_indexed": counters["routed_indexed"],
            "routed_unreadable": counters["routed_unreadable"],
        },
        "unmatched_message_ids": joined.unmatched[:LISTED_UNMATCHED],
        "group": group,
        "positions": positions,
    }


def write(directory: Path, rows: list[join.Row], meta: dict[str, Any]) -> None:
    """dataset.jsonl first, then the manifest that describes it."""
    write_atomic(directory / DATASET_FILE, join.canonical(rows))
    text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(directory / MANIFEST_FILE, text.encode())


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.exists():
        return {}
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def publish(
    directory: Path, db: Store, positions: dict[str, Positions]
) -> tuple[Change, dict[str, Any]]:
    """Rebuild the data set from the store and replace its files; what changed, and the manifest."""
    joined = join.join(db.corrections(), db.routed(), db.erased())
    before = digests(directory)
    meta = manifest(joined, db.counters(), db.group(), positions)
    write(directory, joined.rows, meta)
    return change(before, joined.rows), meta
