"""Repeated warnings, rate-limited: a stuck client or a flood of bad input cannot flood
the logs.

librdkafka repeats some errors every half second for as long as they last (a fetch
that fails at one offset; a broker that is down), and a burst of garbage makes a
dead-letter line per record. Each kind of warning or error, told apart by its event name
and the fields that say where (partition, code, stage, ...), may write ``burst`` lines
per ``window_s``; later ones in the window are counted, not written. The next line of
that kind carries ``suppressed=N``, and ``flush()`` (called from the worker's loop) writes
a ``log_suppressed`` line for a kind that went quiet with a count still owed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

LIMITED_LEVELS = frozenset({"warning", "error"})
# The fields that tell one kind of line from another; free text (an error string that
# names a changing offset) does not, so it cannot defeat the limit.
KIND_FIELDS = ("code", "stage", "error_type", "topic", "partition", "step", "call", "head")
WINDOW_S = 10.0
BURST = 5


@dataclass
class _Kind:
    window_start: float
    written: int = 0
    suppressed: int = 0


class RateLimit:
    """A structlog processor; place it after ``add_log_level``."""

    def __init__(
        self,
        window_s: float = WINDOW_S,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s, self.burst, self.clock = window_s, burst, clock
        self._kinds: dict[tuple[Any, ...], _Kind] = {}
        self._lock = threading.Lock()

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event.get("level") not in LIMITED_LEVELS or event.get("event") == "log_suppressed":
            return event
        key = (event.get("event"), *(str(event.get(f)) for f in KIND_FIELDS))
        now = self.clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None or now - kind.window_start >= self.window_s:
                owed = kind.suppressed if kind is not None else 0
                kind = self._kinds[key] = _Kind(window_start=now)
                if owed:
                    event["suppressed"] = owed
            if kind.written >= self.burst:
                kind.suppressed += 1
                raise structlog.DropEvent
            kind.written += 1
        return event

    def flush(self) -> list[tuple[tuple[Any, ...], int]]:
        """Forget kinds whose window passed; the counts they still owe, to be written."""
        now = self.clock()
        owed = []
        with self._lock:
            for key, kind in list(self._kinds.items()):
                if now - kind.window_start >= self.window_s:
                    del self._kinds[key]
                    if kind.suppressed:
                        owed.append((key, kind.suppressed))
        return owed


# The process's limiter (worker.runtime.logs.configure installs it).
LIMIT = RateLimit()


def flush(log: Any) -> None:
    """Write what the process's limiter owes: one line per quiet kind."""
    for key, count in LIMIT.flush():
        where = {f: v for f, v in zip(KIND_FIELDS, key[1:], strict=True) if v != "None"}
        log.warning("log_suppressed", of=key[0], suppressed=count, window_s=LIMIT.window_s, **where)
