"""What can be wrong with a model before it serves: typed, each message naming the field."""

from __future__ import annotations


class ArtifactError(Exception):
    """A model artifact is incomplete or inconsistent; the message names the field."""
