"""The model artifact's manifest: what a worker needs to rebuild and trust a model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.labels import HEADS

ARTIFACT_FORMAT = "support-router-model"
# 2: training.sources and the out-of-distribution scorer (ood); 1 had neither.
ARTIFACT_FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Backbone(_Frozen):
    source: str = Field(description="what was loaded: a hub id, a local dir, a package, or 'tiny'")
    model_type: str
    config: dict[str, Any] = Field(description="the encoder's transformers config, as a dict")


class Training(_Frozen):
    data_fingerprint: str = Field(min_length=16)
    data_source: str
    sources: list[str] = Field(
        min_length=1,
        description="the collections trained and calibrated on (clinc, banking77, definitions)",
    )
    git_commit: str
    seed: int
    preset: str
    hyperparameters: dict[str, Any]
    best_epoch: int
    train_seconds: float


class OutOfDistribution(_Frozen):
    """The scorer in model.safetensors (``ood.*``) and where its threshold sits."""

    method: Literal["mahalanobis"]
    classes: int = Field(gt=0, description="class means: source intents, or our intents")
    threshold: float = Field(
        gt=0, description="a score above it is unfamiliar: routed to the fallback"
    )
    quantile: float = Field(
        gt=0, le=1, description="share of in-distribution validation messages at or below it"
    )
    fitted_rows: int = Field(gt=0)


# The ways to run one artifact that the trainer scores into its manifest
# (worker.model.variants); the worker serves them by name (MODEL__VARIANT).
ModelVariant = Literal[
    "torch-fp32",
    "torch-int8",
    "torch-bf16",
    "ort-fp32",
    "ort-int8-dynamic",
    "ort-int8-static",
    "ov-fp32",
    "ov-bf16",
    "ov-int8-static",
]

# Further ways the worker serves an artifact by name, which the trainer does not score:
# torch at fp16; bf16 weights on a CPU too (torch-bf16 is autocast there); and torch
# padded (each batch padded to its longest message, where the others run only its real
# tokens: the bench's baseline).
UnscoredVariant = Literal[
    "torch-fp16",
    "torch-bf16-weights",
    "torch-fp32-padded",
    "torch-bf16-padded",
    "torch-fp16-padded",
    "torch-int8-padded",
]
ServedVariant = ModelVariant | UnscoredVariant


class VariantResult(_Frozen):
    """One way to run the artifact (worker.model.variants), as the trainer scored it."""

    scored: bool
    allowed: bool = Field(
        description="no head loses more than 0.5 points of accuracy against torch-fp32, "
        "intent macro-F1 at most 1 point, on the full noisy test"
    )
    why: str | None = Field(default=None, description="why it was not scored")
    file: str | None = Field(
        default=None, description="its ONNX file or OpenVINO IR (.xml), relative to the artifact"
    )
    sha256: str | None = Field(
        default=None,
        min_length=64,
        max_length=64,
        description="of the file; an IR's covers its .bin too (worker.model.variants.file_sha256)",
    )
    accuracy: dict[str, float] | None = Field(
        default=None, description="per head, and intent_macro_f1"
    )
    change: dict[str, float] | None = Field(default=None, description="against torch-fp32")


class Variants(_Frozen):
    test: str = Field(description="the split they were scored on, e.g. test_noisy")
    scored_on: int = Field(gt=0, description="messages")
    token_lengths: list[int] = Field(
        min_length=1, description="a sample of that split's token lengths: autotune's batches"
    )
    results: dict[str, VariantResult]


class Parent(_Frozen):
    """The artifact a fine-tune started from."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    content_hash: str = Field(
        min_length=64, max_length=64, description="the parent's weights_sha256"
    )


class FeedbackUse(_Frozen):
    """Which agents' corrections a fine-tune learned from, and where it cut them by time."""

    fingerprint: str = Field(min_length=1, description="the feedback data set's manifest's")
    holdout_share: float = Field(
        ge=0, lt=1, description="the newest share, by feedback time, held back for compare"
    )
    trained_until: str | None = Field(
        description="feedback time (RFC 3339) of the newest row trained or validated on; "
        "compare scores only what is newer when the data set has changed since"
    )


class LineageCounts(_Frozen):
    feedback_train: int = Field(ge=0, description="corrections trained on")
    feedback_validation: int = Field(
        ge=0, description="corrections validated and calibrated on, not trained on"
    )
    feedback_held_back: int = Field(ge=0, description="the newest corrections, never seen")
    replay_train: int = Field(ge=0, description="rows of the parent's train split mixed in")
    replay_validation: int = Field(ge=0, description="rows of the parent's validation split")
    feedback_repeats: int = Field(
        default=1, ge=1, description="how many times each correction was trained on per epoch"
    )


class Lineage(_Frozen):
    """Where a fine-tuned artifact comes from (support-trainer train --from)."""

    parent: Parent
    feedback: FeedbackUse
    counts: LineageCounts


class Manifest(_Frozen):
    format: Literal["support-router-model"]
    format_version: Literal[2]
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    created_at: str
    backbone: Backbone
    heads: dict[str, list[str]]
    pooling: Literal["cls", "mean"]
    dropout: float = Field(ge=0, lt=1)
    max_length: int = Field(gt=2, le=4096)
    casing_marker: str | None = Field(
        description="token prepended to ALL CAPS texts (the tokenizer is uncased); null = none"
    )
    temperatures: dict[str, float]
    min_action_confidence: float = Field(ge=0, le=1)
    ood: OutOfDistribution
    weights_sha256: str = Field(min_length=64, max_length=64)
    training: Training
    variants: Variants | None = Field(
        default=None,
        description="support-trainer variants: the ONNX files, the OpenVINO IR and each way "
        "to run the artifact, scored; none: torch as configured",
    )
    lineage: Lineage | None = Field(
        default=None,
        description="a fine-tune's parent artifact and the feedback it learned from; "
        "none: trained from a pretrained backbone",
    )

    @model_validator(mode="after")
    def _heads_match_the_contract(self) -> Manifest:
        expected = {name: list(labels) for name, labels in HEADS.items()}
        if self.heads != expected:
            raise ValueError(f"heads must be exactly {expected} (labels.md order)")
        if set(self.temperatures) != set(HEADS):
            raise ValueError(f"temperatures must give one value per head {sorted(HEADS)}")
        if any(t <= 0 for t in self.temperatures.values()):
            raise ValueError("temperatures must be positive")
        return self
