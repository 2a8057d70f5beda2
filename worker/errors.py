"""The worker's exceptions: one root, typed by the stage that failed."""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class ConfigError(WorkerError):
    """A setting or a declaration file is invalid; the process exits 2."""


class KafkaUnavailableError(WorkerError):
    """The cluster did not answer within the bounded time."""


class TopicDriftError(WorkerError):
    """Existing topics differ from deploy/topics.yaml in a way apply cannot fix."""


class FatalKafkaError(WorkerError):
    """The producer was fenced, or credentials were refused: this replica must exit."""


class ModelLoadError(WorkerError):
    """The model artifact is missing, incomplete or inconsistent; the process exits 3."""


class ModelBrokenError(WorkerError):
    """The model fails every batch (circuit breaker open); the process exits 4."""
