"""Named training setups: what `--preset` selects before flag overrides."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.data.splits import DataSpec, Source
from trainer.training import TrainConfig


@dataclass(frozen=True)
class Preset:
    data: DataSpec
    train: TrainConfig
    about: str


# Both collections, and rows that anchor each intent to its labels.md definition.
ALL_SOURCES: tuple[Source, ...] = ("clinc", "banking77", "definitions")

PRESETS = {
    # Tests: a from-scratch 2-layer encoder on synthetic data; well under a minute on CPU.
    "smoke": Preset(
        DataSpec(sources=("synthetic",), synthetic_per_intent=60),
        TrainConfig(
            base_model="tiny",
            epochs=4,
            lr=3e-3,
            batch_size=32,
            max_length=48,
            dropout=0.1,
            patience=4,
        ),
        "tiny encoder, synthetic data, < 1 min on CPU",
    ),
    # make demo: MiniLM on CLINC and Banking77 subsets. The train rows are a balanced
    # subset (splits.balanced_subset): in a random draw the model reads the augmentation's
    # templates and their "!" instead of the rare labels' keywords; balanced, it follows
    # the keywords. Why 5 epochs, and the figures: docs/model.md, "The demo preset".
    "demo": Preset(
        DataSpec(sources=ALL_SOURCES, limit=2500, subset="balanced"),
        TrainConfig(
            base_model="minilm",
            epochs=5,
            lr=1e-4,
            batch_size=32,
            max_length=64,
        ),
        "MiniLM, 2,500 label-balanced train rows of CLINC and of Banking77 each, definitions, "
        "5 epochs: about 6 minutes on 2 CPU cores",
    ),
    # The full protocol of labels.md with the notebook's config2, except lr and epochs,
    # which docs/model.md ("More epochs") chose and measures.
    "full": Preset(
        DataSpec(sources=ALL_SOURCES),
        TrainConfig(lr=1e-4, epochs=6),
        "CLINC + Banking77 + intent definitions, notebook config (warmup 0.1) at lr 1e-4, 6 epochs",
    ),
}
