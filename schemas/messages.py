"""Wire contracts: the inbound message, the routed result, and dead-letter headers.

The worker validates inbound values with ``InboundMessage``. It writes outbound values
as plain dicts serialised by orjson on the hot path; ``OutboundMessage`` is their
contract (JSON Schema in schemas/jsonschema/), and tests validate real output against it.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, field_validator

from schemas.labels import Action

SCHEMA_VERSION: Final = 1
MAX_METADATA_KEYS: Final = 32
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_VALUE_CHARS: Final = 1024

MetadataValue = StrictStr | bool | int | float

# Where a result goes, one topic each (worker.settings.TopicNames).
Route = Literal["escalate", "auto_resolve", "more_info"]
ROUTES: Final[tuple[Route, ...]] = get_args(Route)
# Where what the model cannot vouch for goes: never auto_resolve.
FallbackRoute = Literal["escalate", "more_info"]
# Why a result took its route: the action head; the fallback for low action confidence or
# for input unlike the training data; a safety rule (rule:<name>); no text to classify.
RouteReason = Literal["model", "low_confidence", "unfamiliar", "rule:urgency_high", "empty_text"]
# Where a record failed, in a dead letter's x-error-stage header; "fetch": the Kafka client
# could not deliver it (a pointer dead letter for a span of offsets, worker.unreadable).
DlqStage = Literal["fetch", "decode", "validate", "infer", "route", "serialize", "produce"]
DLQ_STAGES: Final[tuple[DlqStage, ...]] = get_args(DlqStage)


class InboundMessage(BaseModel):
    """A customer message on ``support.inbound`` (JSON, UTF-8); unknown fields pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    message_id: StrictStr = Field(min_length=1, max_length=128)
    text: StrictStr
    conversation_id: StrictStr | None = Field(default=None, max_length=256)
    customer_id: StrictStr | None = Field(default=None, max_length=256)
    channel: StrictStr | None = Field(default=None, max_length=64)
    locale: StrictStr | None = Field(default=None, max_length=35)
    created_at: AwareDatetime | None = Field(default=None, description="RFC 3339, with offset")
    metadata: dict[str, MetadataValue] | None = Field(
        default=None, description=f"flat: at most {MAX_METADATA_KEYS} string/number/bool values"
    )

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(
        cls, value: dict[str, MetadataValue] | None
    ) -> dict[str, MetadataValue] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys, got {len(value)}")
        for key, item in value.items():
            if len(key) > MAX_METADATA_KEY_CHARS:
                raise ValueError(f"key longer than {MAX_METADATA_KEY_CHARS} chars")
            if isinstance(item, str) and len(item) > MAX_METADATA_VALUE_CHARS:
                raise ValueError(f"value of {key!r} longer than {MAX_METADATA_VALUE_CHARS} chars")
        return value


class HeadPrediction(BaseModel):
    label: str
    confidence: float = Field(ge=0, le=1, description="calibrated probability of the label")
    probabilities: dict[str, float]


class Routing(BaseModel):
    policy: str = Field(description="the policy's name and parameters, e.g. action>=0.7")
    reason: RouteReason = Field(
        description="model: the action head; low_confidence, unfamiliar: the fallback; "
        "rule:<name>: a safety rule; empty_text: nothing to classify"
    )
    truncated: bool = Field(description="the text was cut to the model's max_length")
    unfamiliarity: float | None = Field(
        default=None,
        description="the model's out-of-distribution score (above the policy's threshold: "
        "'unfamiliar'); null when the model was not run",
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    content_hash: str


class Timing(BaseModel):
    kafka_timestamp_ms: int | None = Field(description="the input record's Kafka timestamp")
    classified_at: str = Field(description="RFC 3339 UTC")
    queue_ms: float | None = Field(description="Kafka timestamp -> batch start")
    inference_ms: float
    batch_size: int


class Source(BaseModel):
    topic: str
    partition: int
    offset: int


class OutboundMessage(BaseModel):
    """A routed result on support.escalate / support.auto_resolve / support.more_info."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    message_id: str
    conversation_id: str | None
    route: Route
    action: Action
    predictions: dict[str, HeadPrediction] | None = Field(
        description="per head; null when the model was not called (empty text)"
    )
    routing: Routing
    model: ModelInfo
    timing: Timing
    source: Source
    message: dict[str, Any] = Field(description="the inbound message as received")


# Dead letters keep the original key, value and headers untouched and add these.
HEADER_STAGE: Final = "x-error-stage"  # one of DLQ_STAGES
HEADER_TYPE: Final = "x-error-type"
HEADER_MESSAGE: Final = "x-error-message"
HEADER_SOURCE_TOPIC: Final = "x-source-topic"
HEADER_SOURCE_PARTITION: Final = "x-source-partition"
HEADER_SOURCE_OFFSET: Final = "x-source-offset"
# Stage "fetch" only: the last offset of the unreadable span that starts at x-source-offset.
HEADER_SOURCE_OFFSET_LAST: Final = "x-source-offset-last"
# A record that `support-worker dlq replay` re-published: "<dlq topic>/<partition>/<offset>".
HEADER_REPLAY_OF: Final = "x-replay-of"
HEADER_CONTENT_TYPE: Final = "content-type"
HEADER_MODEL_VERSION: Final = "model-version"
