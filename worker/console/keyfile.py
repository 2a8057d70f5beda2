"""Secret keys the console reads from mounted files (the agent pseudonyms', the sessions')."""

from __future__ import annotations

from pathlib import Path

from worker.errors import ConfigError


def read_key(path: Path, flag: str, min_bytes: int) -> bytes:
    """The key in ``path``, whitespace around it left out (a key written with ``echo``
    ends in a newline). Errors name the flag and the path, never the content."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from exc
    if len(key) < min_bytes:
        raise ConfigError(
            f"{flag} {path} holds {len(key)} bytes; it needs at least {min_bytes} random "
            f"ones (head -c {2 * min_bytes} /dev/urandom > {path})"
        )
    return key
