"""A parent's data rebuilt from its manifest, and the stratified replay sample of it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from schemas.artifact import Training
from trainer.data import replay
from trainer.data.records import Example
from trainer.data.splits import DataSpec
from trainer.errors import DataError


def _training(**changes: Any) -> Training:
    fields: dict[str, Any] = {
        "data_fingerprint": "0" * 64,
        "data_source": "clinc:/d/clinc.json, banking77:/d/train.csv, definitions",
        "sources": ["clinc", "banking77", "definitions"],
        "git_commit": "abc",
        "seed": 7,
        "preset": "full",
        "hyperparameters": {},
        "best_epoch": 1,
        "train_seconds": 1.0,
    }
    return Training.model_validate(fields | changes)


def test_the_spec_names_the_collections_trained_on_with_their_seed() -> None:
    preset = DataSpec(sources=("clinc", "banking77", "definitions"), synthetic_per_intent=9)
    spec = replay.spec_of(_training(sources=["clinc"]), preset)
    assert spec.sources == ("clinc",) and spec.train_sources is None
    assert spec.seed == 7 and spec.synthetic_per_intent == 9 and spec.limit is None


def test_a_limited_train_split_is_rebuilt_limited_and_the_hub_stays_the_hub() -> None:
    training = _training(
        data_source="hub, banking77:/x (limit 2500, balanced train rows)",
        sources=["clinc", "banking77"],
    )
    spec = replay.spec_of(training, DataSpec())
    assert spec.sources == ("hub", "banking77")
    assert (spec.limit, spec.subset) == (2500, "balanced")


def test_split_files_are_named_and_an_unknown_collection_is_refused() -> None:
    training = _training(data_source="files:/data/mine", sources=["mine"])
    assert replay.files_of(training) == Path("/data/mine")
    assert replay.files_of(_training()) is None
    with pytest.raises(DataError, match="cannot rebuild collection mine"):
        replay.spec_of(training, DataSpec())


def test_the_sample_keeps_each_source_intents_share_and_the_order() -> None:
    examples = [
        Example(f"t{i}", "general_question", None, None, None, source, "clinc")
        for i, source in enumerate(["weather"] * 600 + ["timer"] * 300 + ["balance"] * 100)
    ]
    drawn = replay.sample(examples, 100, seed=1, split="train")
    assert Counter(ex.source for ex in drawn) == {"weather": 60, "timer": 30, "balance": 10}
    index = [examples.index(ex) for ex in drawn]
    assert index == sorted(index)
    assert drawn == replay.sample(examples, 100, seed=1, split="train")  # deterministic
    assert drawn != replay.sample(examples, 100, seed=2, split="train")
    assert len(replay.sample(examples, 5000, seed=1, split="train")) == 1000
