"""The trainer's exceptions: one root, typed by what failed."""

from __future__ import annotations


class TrainerError(Exception):
    """Root of every error the trainer raises on purpose."""


class DataError(TrainerError):
    """A data file or mapping is invalid; the message names file, line and field."""

    def __init__(self, message: str, *, path: str = "", line: int = 0, field: str = "") -> None:
        where = ":".join(str(p) for p in (path, line or "") if p)
        prefix = f"{where}: " if where else ""
        suffix = f" (field {field!r})" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.path, self.line, self.field = path, line, field


class SourceUnavailableError(TrainerError):
    """A remote data source (the Hugging Face hub) cannot be reached."""


class BackboneNotFoundError(TrainerError):
    """No encoder could be loaded; the message lists what was tried."""
