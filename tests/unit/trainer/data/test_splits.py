"""build-data on the vendored CLINC file: deterministic, and every intent in every split."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemas.labels import INTENTS
from tests.conftest import CLINC_FILE
from trainer.cli import main
from trainer.data import clinc
from trainer.errors import SourceUnavailableError


def test_build_data_is_deterministic_and_covers_every_intent(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert (
            main(["build-data", "--clinc-path", str(CLINC_FILE), "--out", str(tmp_path / out)]) == 0
        )
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [
        "stats.json",
        "test_clean.jsonl",
        "test_noisy.jsonl",
        "train.jsonl",
        "val.jsonl",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    import json

    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["train"]["examples"] == 15250 and stats["test_noisy"]["examples"] == 5500
    for split in ("train", "val", "test_noisy", "test_clean"):
        counts = stats[split]["labels"]["intent"]
        assert all(counts[i] > 0 for i in INTENTS), (split, counts)


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    main(
        [
            "build-data",
            "--clinc-path",
            str(CLINC_FILE),
            "--out",
            str(tmp_path / "a"),
            "--limit",
            "300",
        ]
    )
    base = ["build-data", "--clinc-path", str(CLINC_FILE), "--limit", "300"]
    main([*base, "--out", str(tmp_path / "b"), "--seed", "7"])
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (
        tmp_path / "b" / "train.jsonl"
    ).read_bytes()


def test_the_hub_fails_fast_and_clearly_when_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    # An address nothing listens on stands in for a hub this machine cannot reach.
    monkeypatch.setattr(clinc, "HUB_PROBE_URL", "http://127.0.0.1:1/api/datasets/clinc_oos")
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=r"not reachable.*--clinc-path"):
        clinc.load_hub(timeout_s=5)
    assert time.monotonic() - started < 10


def test_synthetic_source_is_deterministic(tmp_path: Path) -> None:
    for out in ("a", "b"):
        main(
            [
                "build-data",
                "--source",
                "synthetic",
                "--synthetic-per-intent",
                "20",
                "--out",
                str(tmp_path / out),
            ]
        )
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (
        tmp_path / "b" / "train.jsonl"
    ).read_bytes()
