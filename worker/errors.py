"""The worker's exceptions: one root, typed by the stage that failed."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The worker's exit codes, in one place (docs/architecture.md, "Shutdown and exit
    codes")."""

    OK = 0  # stopped by a signal after a clean drain
    FATAL = 1  # a fatal Kafka error, a hung librdkafka call, or the shutdown grace ran out
    CONFIG = 2  # a setting or a declaration file is invalid
    MODEL_LOAD = 3  # the model artifact cannot be loaded
    MODEL_BROKEN = 4  # the circuit breaker opened
    SECOND_SIGNAL = 130  # a second SIGTERM/SIGINT: exit at once


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
