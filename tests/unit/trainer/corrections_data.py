"""Small feedback data sets in the collector's format (DIR/dataset.jsonl, DIR/manifest.json)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NO_LABELS = {"intent": None, "urgency": None, "sentiment": None, "action": None}


def row(i: int, text: str, *, minutes: float | None = None, **labels: str | None) -> dict[str, Any]:
    """Message ``m{i:04d}``, corrected ``minutes`` after T0 (default: i * 10)."""
    at = T0 + timedelta(minutes=i * 10 if minutes is None else minutes)
    return {
        "message_id": f"m{i:04d}",
        "text": text,
        **NO_LABELS,
        **labels,
        "collection": "feedback",
        "source": "",
        "customer_id": f"c{i % 7}",
        "at": at.isoformat().replace("+00:00", "Z"),
        "classified_at": (at - timedelta(minutes=2)).isoformat().replace("+00:00", "Z"),
        "model_version": "2026.02.28+00000000",
        "agent_id": "agent-1",
        "review_reason": ("unfamiliar", "low_confidence", "random", None)[i % 4],
        "predicted": {
            "intent": "general_question",
            "urgency": "low",
            "sentiment": "calm",
            "action": "auto_resolve",
        },
    }


def write(directory: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows sorted by message id, as the collector writes them; the fingerprint is their
    sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n"
        for r in sorted(rows, key=lambda r: r["message_id"])
    ]
    data = "".join(lines).encode()
    (directory / "dataset.jsonl").write_bytes(data)
    manifest = {"fingerprint": hashlib.sha256(data).hexdigest(), "counts": {"examples": len(rows)}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory
