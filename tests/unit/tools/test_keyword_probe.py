"""The keyword probe: test texts, one taught keyword each, labelled by labels.md's rules."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tools import keyword_probe
from trainer import labeling
from trainer.augmentation import PREFIXES, SUFFIXES
from trainer.data.records import read_labelled
from trainer.data.splits import DataSpec, raw_rows

SPEC = DataSpec(sources=("synthetic",), synthetic_per_intent=100)


def test_each_row_is_a_test_text_with_one_phrase_labelled_by_the_rules() -> None:
    rows = keyword_probe.build(SPEC, n=96)
    assert rows == keyword_probe.build(SPEC, n=96)
    assert len(rows) == 96
    tests = {text.rstrip(".?") for text, _ in raw_rows(SPEC, "synthetic")[0]["test"]}
    for ex in rows:
        assert "!" not in ex.text
        phrases = [p for p in keyword_probe.PHRASES if p in ex.text.lower()]
        assert phrases, ex.text
        rest = {ex.text.lower().replace(p, "").strip(" ,.-") for p in phrases}
        assert rest & tests, ex.text
        assert ex.intent is not None
        assert labeling.label_all(ex.text, ex.intent) == {
            "intent": ex.intent,
            "urgency": ex.urgency,
            "sentiment": ex.sentiment,
            "action": ex.action,
        }
    assert Counter(ex.sentiment for ex in rows)["angry"] >= 96 // 3


def test_every_phrase_carries_a_keyword_the_augmentation_teaches() -> None:
    taught = " ".join((*sum(PREFIXES.values(), ()), *sum(SUFFIXES.values(), ()))).lower()
    keywords = [
        kw
        for kws in (*labeling.URGENCY_KEYWORDS.values(), *labeling.SENTIMENT_KEYWORDS.values())
        for kw in kws
    ]
    for phrase in keyword_probe.PHRASES:
        carried = [kw for kw in keywords if re.search(rf"\b{kw}\b", phrase)]
        assert carried and all(re.search(rf"\b{kw}\b", taught) for kw in carried), phrase


def test_the_command_writes_a_file_the_trainer_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_probe, "SOURCES", ("synthetic",))
    out = tmp_path / "probe.jsonl"
    assert keyword_probe.main(["--out", str(out), "--n", "20"]) == 0
    examples, skipped = read_labelled(out)
    assert len(examples) == 20 and skipped == 0
