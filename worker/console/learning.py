"""The learning loop as the console sees it, kept on the event loop: the review queue, the
agreement of the model with the agents, and a shadow candidate's agreement with the
serving model. No Kafka, no web: the learning tap hands over what it read, the review
endpoints ask and answer here.

Every record is untrusted: one that does not validate against its contract
(``schemas.learning``) is counted per topic and left out, never shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

import structlog
from pydantic import ValidationError

from schemas.learning import FEEDBACK_SCHEMA_VERSION, Feedback, ReviewItem, ShadowResult
from schemas.messages import HEADER_STAGE
from worker.console import views
from worker.console.agreement import Agreement
from worker.console.review_queue import MAX_ITEMS, Queued, ReviewQueue
from worker.console.shadow import ShadowAgreement
from worker.console.views import SeenRecord
from worker.settings import TopicNames

log = structlog.get_logger("console")

MAX_ERRORS_SHOWN: Final = 3


class Learning:
    def __init__(
        self,
        topics: TopicNames,
        review: bool,
        *,
        max_queue: int = MAX_ITEMS,
        bucket_s: int = 3600,
    ) -> None:
        self.review = review
        self.queue = ReviewQueue(max_queue)
        self.agreement = Agreement(bucket_s)
        self.shadow = ShadowAgreement()
        readers: dict[str, Callable[[SeenRecord], None]] = {topics.shadow: self._on_shadow}
        if review:  # without --review the console holds no customer text from these topics
            readers[topics.review] = self._on_review
            readers[topics.feedback] = self._on_feedback
        self._readers = readers
        self.read: dict[str, int] = dict.fromkeys(readers, 0)
        self.unreadable: dict[str, int] = dict.fromkeys(readers, 0)
        self.dead_letters: dict[str, int] = dict.fromkeys(readers, 0)
        self.submitting: set[str] = set()  # message ids whose correction is being produced
        self.tap_error: str | None = None  # the learning tap stopped (a defect)

    def topics(self) -> list[str]:
        """What the learning tap reads: the shadow topic, with --review the review and
        feedback topics too."""
        return list(self._readers)

    def on_records(self, records: list[SeenRecord]) -> None:
        for rec in records:
            reader = self._readers.get(rec.topic)
            if reader is None:
                continue
            if any(key == HEADER_STAGE for key, _ in rec.headers):
                # A worker in shadow sends its dead letters to the shadow topic too (its
                # only output): counted, not mistaken for broken shadow results.
                self.dead_letters[rec.topic] += 1
                continue
            try:
                reader(rec)
            except ValidationError as exc:
                self.unreadable[rec.topic] += 1
                log.warning(
                    "console_record_unreadable",
                    topic=rec.topic,
                    offset=rec.offset,
                    error=f"{exc.error_count()} schema errors",
                )
                continue
            self.read[rec.topic] += 1

    def answered(self, fb: Feedback) -> None:
        """A correction, this console's or another's: the message leaves the queue."""
        self.queue.answer(fb.message_id)
        self.agreement.on_feedback(fb.message_id, fb.labels.given(), fb.at.timestamp())

    def _on_review(self, rec: SeenRecord) -> None:
        item = ReviewItem.model_validate_json(rec.value or b"")
        out = item.result
        preds = out.predictions
        self.agreement.on_item(
            out.message_id,
            out.model.version,
            None if preds is None else {h: p.label for h, p in preds.items()},
            item.review.weight,
        )
        self.queue.add(
            Queued(
                out.message_id,
                out.model.version,
                item.review.reason,
                item.review.priority,
                views.review_item(item, rec.timestamp_ms),
            )
        )

    def _on_feedback(self, rec: SeenRecord) -> None:
        self.answered(Feedback.model_validate_json(rec.value or b""))

    def _on_shadow(self, rec: SeenRecord) -> None:
        s = ShadowResult.model_validate_json(rec.value or b"")
        model = s.result.model
        self.shadow.add(
            (model.name, model.version), s.serving.model.version, s.agree, rec.timestamp_ms
        )


def feedback_for(item: Queued, body: Mapping[str, Any], agent_id: str, at: datetime) -> Feedback:
    """The correction of ``item`` that a request's body asks for: ``labels`` and ``reason``
    from the body; the message, the model version and the review reason from the queued
    item, whatever the body says of them. ValidationError when it is no valid Feedback."""
    reason = body.get("reason")
    return Feedback.model_validate(
        {
            "schema_version": FEEDBACK_SCHEMA_VERSION,
            "message_id": item.message_id,
            "labels": body.get("labels"),
            "agent_id": agent_id,
            "model_version": item.model_version,
            "at": at,
            "reason": (reason.strip() or None) if isinstance(reason, str) else reason,
            "review_reason": item.reason,
        }
    )


def errors_text(exc: ValidationError) -> str:
    """The first few problems, as ``where: what``."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
        for e in exc.errors()[:MAX_ERRORS_SHOWN]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
