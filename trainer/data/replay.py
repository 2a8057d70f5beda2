"""The data an artifact was trained on, rebuilt from its manifest, and the replay sample
of it that a fine-tune mixes into the agents' corrections so the model does not forget.

A manifest names its preset, the collections it trained on, its seed and the origin
string ``trainer.build.load_or_build`` wrote; with the preset's ``DataSpec`` that is
enough to rebuild the same splits (the builder is deterministic per source and seed).
Compare builds the fixed test sets from the same spec.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Final

from schemas.artifact import Training
from trainer.data.records import Example
from trainer.data.splits import COLLECTIONS, DataSpec, Source, stratum_quotas
from trainer.errors import DataError

# Train rows of the parent's data mixed into a fine-tune; validation rows are a quarter
# as many. About 2,000 keeps a MiniLM fine-tune to minutes on 2 CPU cores while every
# source intent of CLINC and Banking77 still appears.
REPLAY_ROWS: Final = 2000
FILES_PREFIX: Final = "files:"
# What load_or_build appends to the origin when --limit picked the train rows.
_LIMIT = re.compile(r"\(limit (\d+), (random|balanced) train rows\)$")


def files_of(training: Training) -> Path | None:
    """The directory of split files a model was trained from (train --data-dir), if any."""
    if training.data_source.startswith(FILES_PREFIX):
        return Path(training.data_source.removeprefix(FILES_PREFIX))
    return None


def spec_of(training: Training, preset: DataSpec) -> DataSpec:
    """The spec that rebuilds the splits of the collections ``training`` names, on top of
    its preset's: only those collections, the same seed and the same train-row limit."""
    # The origin starts with the sources, "clinc:/path, banking77:/path; trained on ...".
    listed = {
        part.split(":", 1)[0].strip() for part in training.data_source.split(";")[0].split(",")
    }
    by_collection: dict[str, Source] = {c: s for s, c in COLLECTIONS.items() if s != "hub"}
    if "hub" in listed:
        by_collection["clinc"] = "hub"
    unknown = [c for c in training.sources if c not in by_collection]
    if unknown:
        raise DataError(
            f"cannot rebuild collection {', '.join(unknown)} from the manifest; give the "
            "splits with --data-dir"
        )
    spec = replace(
        preset,
        sources=tuple(by_collection[c] for c in training.sources),
        train_sources=None,
        seed=training.seed,
    )
    limit = _LIMIT.search(training.data_source)
    if limit:
        spec = replace(
            spec, limit=int(limit[1]), subset="balanced" if limit[2] == "balanced" else "random"
        )
    return spec


def sample(examples: list[Example], n: int, seed: int, split: str) -> list[Example]:
    """``n`` of the examples (all when there are fewer), stratified: each source intent
    (or intent, where a row has none) keeps its share of the whole; drawn at random within
    it, returned in their given order."""
    strata: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        strata.setdefault(f"{ex.collection}:{ex.source or ex.intent}", []).append(i)
    quotas = stratum_quotas({k: len(v) for k, v in strata.items()}, n, power=1.0)
    rng = random.Random(f"{seed}:replay:{split}")
    chosen: list[int] = []
    for key in sorted(strata):
        chosen += rng.sample(strata[key], quotas[key])
    return [examples[i] for i in sorted(chosen)]
