"""The feedback collector's exceptions, under the trainer's root."""

from __future__ import annotations

from trainer.errors import TrainerError


class FeedbackError(TrainerError):
    """A collect or forget run cannot go on; the message says what to do."""


class KafkaUnreachableError(FeedbackError):
    """The cluster did not answer within the time allowed."""


class StoreError(FeedbackError):
    """The data set directory is not the store this command expects (group, lock, file)."""
