"""When to swap the served model: a moved ``current`` pointer, or SIGHUP.

Model versions live side by side (``models/<version>/``) with a ``current`` link that
``support-trainer promote`` moves atomically; the worker's ``model.path`` names the link.
The pipeline asks ``due()`` between batches; on a change it drains and commits what it
holds, loads the new version on the model thread (autotuned and warmed up like at
startup), and goes on with it. A version that fails to load is remembered, so the old
one keeps serving without a retry every tick, until the pointer moves again or SIGHUP.
Rollback is the same operation: the pointer moves back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.model.protocol import Model
    from worker.model.tuner import LiveVariants
    from worker.routing import RoutingPolicy


@dataclass(frozen=True)
class Swapped:
    """A freshly loaded version, ready to serve: what the pipeline replaces."""

    model: Model
    policy: RoutingPolicy
    live: LiveVariants | None
    target: str  # the directory it was loaded from (the pointer's target then)
    variant: str


def target(path: Path) -> str:
    """Where ``path`` points now (itself when it is not a link)."""
    return os.path.realpath(path)


class PointerWatch:
    def __init__(
        self, path: Path, every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.every_s = every_s
        self.clock = clock
        self.loaded = target(path)
        self.failed: str | None = None
        self.requested = False  # SIGHUP: reload even when the pointer did not move
        self.checked_at = clock()

    def request(self) -> None:
        self.requested = True

    def due(self) -> bool:
        if self.requested:
            return True
        if self.every_s <= 0 or self.clock() - self.checked_at < self.every_s:
            return False
        self.checked_at = self.clock()
        now = target(self.path)
        return now != self.loaded and now != self.failed

    def swapped(self, to: str) -> None:
        self.loaded, self.failed, self.requested = to, None, False

    def refused(self, to: str) -> None:
        self.failed, self.requested = to, False
