"""What can be wrong with a model before it serves: typed, each message naming the field."""

from __future__ import annotations


class ArtifactError(Exception):
    """A model artifact is incomplete or inconsistent; the message names the field."""


class DeviceError(ValueError):
    """A setting this device cannot honour (no CUDA, no bf16, int8 on a GPU); the message
    names the setting."""
