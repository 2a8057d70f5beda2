"""The learning loop's wire contracts: an agent's correction, a review-queue entry, and a
candidate model's result in shadow.

``Feedback`` is what an agent (the console's review page, or any tool of the support
desk) produces to ``support.feedback``: the labels the model should have given one
routed message. It is untrusted input like every inbound record: a consumer that cannot
validate it dead-letters it with the reason and goes on.

``ReviewItem`` is what the worker's sampling policy (``worker.review``) produces to
``support.review``, in the same transaction as the routed result it copies.

``ShadowResult`` is what a worker in shadow (``support-worker run --shadow``) produces to
``support.shadow``: the candidate's result beside the serving model's labels.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, model_validator

from schemas.labels import Action, Intent, Sentiment, Urgency
from schemas.messages import ModelInfo, OutboundMessage, Route

FEEDBACK_SCHEMA_VERSION: Final = 1
# A pseudonym, never a name or an e-mail address: what the console's keyed hash writes
# (or an opaque id of the desk's own). The pattern keeps '@' and spaces out.
AGENT_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_REASON_CHARS: Final = 500

# Why the sampling policy queued a message for review: every unfamiliar and
# low-confidence one, and a random share of the confident ones (unbiased accuracy).
ReviewReason = Literal["unfamiliar", "low_confidence", "random"]
REVIEW_REASONS: Final[tuple[ReviewReason, ...]] = get_args(ReviewReason)


class CorrectedLabels(BaseModel):
    """The right label of any subset of the four heads (at least one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: Intent | None = None
    urgency: Urgency | None = None
    sentiment: Sentiment | None = None
    action: Action | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> CorrectedLabels:
        if not self.given():
            raise ValueError("labels: correct at least one of intent, urgency, sentiment, action")
        return self

    def given(self) -> dict[str, str]:
        return {h: v for h, v in self.model_dump().items() if v is not None}


class Feedback(BaseModel):
    """An agent's correction of one routed message, on ``support.feedback`` (JSON, UTF-8).

    Keyed by ``message_id``. A later record for the same message replaces an earlier one
    (the latest correction wins when the trainer collects them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    message_id: StrictStr = Field(min_length=1, max_length=128)
    labels: CorrectedLabels = Field(
        description="the right labels; a head left out is neither confirmed nor corrected"
    )
    agent_id: StrictStr = Field(
        pattern=AGENT_ID_PATTERN, description="pseudonymous: a keyed hash or an opaque id"
    )
    model_version: StrictStr = Field(
        min_length=1, max_length=128, description="the version that routed the message"
    )
    at: AwareDatetime = Field(description="when the agent submitted it, RFC 3339 with offset")
    reason: StrictStr | None = Field(default=None, max_length=MAX_REASON_CHARS)
    review_reason: ReviewReason | None = Field(
        default=None,
        description="set when the message came from the review queue: why it was queued",
    )


class Review(BaseModel):
    reason: ReviewReason
    priority: float = Field(
        ge=0,
        le=1,
        description="how much a label would teach the model: 1 minus the smaller of the "
        "intent and action heads' margins (top probability minus the second)",
    )
    weight: float = Field(
        ge=1,
        description="how many routed messages this one stands for: 1 for unfamiliar and "
        "low_confidence (all are queued), 1/share for the random sample",
    )
    signature: str = Field(description="a SimHash of the message's tokens, hex: near-copies match")


class ReviewItem(BaseModel):
    """A routed result queued for agents to label, on ``support.review``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    review: Review
    result: OutboundMessage = Field(description="the routed result, as published")


class Serving(BaseModel):
    model: ModelInfo
    route: Route
    labels: dict[str, str] = Field(description="per head, the serving model's label")


class ShadowResult(BaseModel):
    """A candidate's result on live traffic, with the serving model's for comparison."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    result: OutboundMessage = Field(description="what the candidate would have published")
    serving: Serving
    agree: dict[str, bool] = Field(description="per head, and 'route': the two models agree")
