"""`support-trainer train --from`: learn from the agents' corrections.

1. Warm-start from the serving artifact: its weights, tokenizer (casing marker included),
   heads, pooling and max_length.
2. Fine-tune for a few epochs on the older corrections (the newest share is held back
   for compare, ``corrections.split_by_time``) mixed with a stratified replay sample of
   the parent's own train split, so the model does not forget what it knew.
3. Refit the temperatures and the OOD scorer on that mix (``build.finish``, as a fresh
   model is): the new traffic becomes familiar.
4. Export an artifact whose manifest's ``lineage`` names the parent and the feedback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from schemas.artifact import Manifest
from trainer import build
from trainer.data import corrections, replay
from trainer.data.corrections import Correction, CorrectionSet
from trainer.data.records import Example
from trainer.errors import TrainerError
from trainer.training import EpochHook, TrainConfig, accelerator_for, fit
from worker.model.artifact import load_artifact
from worker.model.text import CASING_MARKER

FINETUNE_EPOCHS: Final = 3
# A warm start begins at a converged model: the learning rate it was trained at would
# carry it far from there and forget the collections; a quarter of it (MiniLM's full
# preset: 1e-4 -> 2.5e-5) adapts. Half of it learned Banking77 faster (intent macro-F1
# 0.800 against 0.761 at 500 corrections) but cost CLINC 1.9 points, more than the gate
# (trainer.compare) allows. A parent that is itself a fine-tune already has it.
LR_SCALE: Final = 0.25
# The corrections are repeated in each epoch until they are about as many rows as the
# replay sample: a few hundred among 2,000 replayed rows were a sixth of the gradient,
# and the model barely moved toward the traffic it had to learn (Banking77 intent
# macro-F1 0.597 -> 0.651 at 100 corrections, docs/learning.md). At most 8 repeats: a
# handful of corrections repeated more would be memorized, not learned.
MAX_FEEDBACK_REPEATS: Final = 8


def feedback_repeats(corrections: int, replay_rows: int) -> int:
    """How many times each correction is trained on per epoch (1 when there are none)."""
    if corrections == 0:
        return 1
    return max(1, min(MAX_FEEDBACK_REPEATS, round(replay_rows / corrections)))


@dataclass(frozen=True)
class Mix:
    """What a fine-tune trains, validates and is tested on, and where each part came from."""

    data: dict[str, list[Example]]  # train, val; the parent's test splits as they are
    held_back: list[Correction]
    feedback_train: list[Correction]
    feedback_validation: list[Correction]
    replay_train: int
    replay_validation: int
    feedback_repeats: int = 1

    @property
    def trained_until(self) -> str | None:
        used = self.feedback_train + self.feedback_validation
        return max(c.at for c in used).isoformat() if used else None


def config_for(parent: Manifest) -> TrainConfig:
    """The parent's hyperparameters with its architecture, at a fine-tune's epochs and
    learning rate, without the training-only source-intent head (the parent's was dropped
    at export, and a fresh one would push random gradients into a trained encoder)."""
    known = {f.name for f in fields(TrainConfig)}
    hyper = {k: v for k, v in parent.training.hyperparameters.items() if k in known}
    base = TrainConfig(**hyper)
    return replace(
        base,
        base_model=parent.backbone.source,
        pooling=parent.pooling,
        dropout=parent.dropout,
        max_length=parent.max_length,
        casing_marker=parent.casing_marker is not None,
        lr=base.lr if parent.lineage else base.lr * LR_SCALE,
        epochs=FINETUNE_EPOCHS,
        aux_source_intent=False,
        device="auto",
        threads=None,
    )


def mix(
    feedback: CorrectionSet,
    parent_data: dict[str, list[Example]],
    *,
    holdout_share: float,
    replay_rows: int,
    seed: int,
    repeats: int | None = None,
) -> Mix:
    """The older corrections (a share of them for validation) with a replay sample of the
    parent's train and validation splits; the newest ``holdout_share`` left out."""
    split = corrections.split_by_time(feedback.rows, holdout_share)
    if not split.usable:
        raise TrainerError(
            f"all {len(feedback.rows)} corrections in {feedback.path} are held back at "
            f"--holdout-share {holdout_share}: nothing to learn from"
        )
    train, validation = corrections.validation_part(split.usable)
    if not train:  # too few to spare any for validation
        train, validation = split.usable, []
    replay_train = replay.sample(parent_data["train"], replay_rows, seed, "train")
    replay_val = replay.sample(parent_data["val"], replay_rows // 4, seed, "val")
    k = feedback_repeats(len(train), len(replay_train)) if repeats is None else repeats
    # Validation picks the epoch and fits the temperatures: weighted the same way, so the
    # confidence the routing policy trusts is calibrated on the traffic being learned,
    # not on the parent's collections alone.
    k_val = feedback_repeats(len(validation), len(replay_val)) if repeats is None else repeats
    data = {
        "train": replay_train + [c.training_example() for c in train] * k,
        "val": replay_val + [c.training_example() for c in validation] * k_val,
        **{k: v for k, v in parent_data.items() if k in build.TEST_SPLITS},
    }
    return Mix(data, split.held_back, train, validation, len(replay_train), len(replay_val), k)


def lineage(
    parent: Manifest, feedback: CorrectionSet, m: Mix, holdout_share: float
) -> dict[str, Any]:
    """The manifest's ``lineage`` (schemas.artifact.Lineage)."""
    return {
        "parent": {
            "name": parent.name,
            "version": parent.version,
            "content_hash": parent.weights_sha256,
        },
        "feedback": {
            "fingerprint": feedback.fingerprint,
            "holdout_share": holdout_share,
            "trained_until": m.trained_until,
        },
        "counts": {
            "feedback_train": len(m.feedback_train),
            "feedback_validation": len(m.feedback_validation),
            "feedback_held_back": len(m.held_back),
            "replay_train": m.replay_train,
            "replay_validation": m.replay_validation,
            "feedback_repeats": m.feedback_repeats,
        },
    }


def run(
    parent_dir: Path,
    feedback: CorrectionSet,
    m: Mix,
    cfg: TrainConfig,
    out: Path,
    *,
    holdout_share: float,
    name: str | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Fine-tune the artifact in ``parent_dir`` on ``m`` and export the child to ``out``;
    returns the metrics written beside it. ``on_epoch`` gets each epoch's history row."""
    started = time.monotonic()
    parent = load_artifact(parent_dir)
    manifest = parent.manifest
    if manifest.casing_marker not in (None, CASING_MARKER):
        raise TrainerError(
            f"{parent_dir}: casing marker {manifest.casing_marker!r} is not this trainer's "
            f"{CASING_MARKER!r}; retrain from the backbone"
        )
    # Step 1: warm start (the seed is set before the first random draw of the loop).
    accelerator = accelerator_for(cfg)
    # Step 2: fine-tune on the mix.
    result = fit(
        parent.model,
        parent.tokenizer,
        manifest.backbone.source,
        cfg,
        m.data["train"],
        m.data["val"],
        accelerator=accelerator,
        started=started,
        on_epoch=on_epoch,
    )
    # Steps 3 and 4: recalibrate, refit the OOD scorer, export with the lineage. The
    # training block keeps the parent's preset, origin and collections: they describe the
    # data replayed here, and the next fine-tune rebuilds it from them.
    provenance = build.Provenance(
        name or manifest.name,
        manifest.training.preset,
        manifest.training.data_source,
        tuple(manifest.training.sources),
        lineage(manifest, feedback, m, holdout_share),
    )
    return build.finish(result, m.data, cfg, out, provenance, started)
