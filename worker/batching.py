"""Micro-batches bounded by size, tokens and time. Pure: the clock is injected.

A batch closes when it holds ``max_size`` items, when the next item would push it
past ``max_tokens``, or ``max_wait_s`` after its first item arrived, whichever
comes first. The batcher owns the deadline, so a ``consume()`` that returns early
(confluent-kafka#2205) only costs a loop turn, never a smaller batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_size: int
    max_tokens: int
    max_wait_s: float

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_tokens < 1 or self.max_wait_s < 0:
            raise ValueError(f"invalid batch limits {self}")


@dataclass
class Batcher(Generic[T]):
    limits: BatchLimits
    clock: Callable[[], float] = time.monotonic
    items: list[T] = field(default_factory=list)
    tokens: int = 0
    opened_at: float | None = None

    def fits(self, tokens: int) -> bool:
        """Whether an item of ``tokens`` joins this batch (an empty batch takes anything)."""
        if not self.items:
            return True
        return (
            len(self.items) < self.limits.max_size
            and self.tokens + tokens <= self.limits.max_tokens
        )

    def add(self, item: T, tokens: int) -> None:
        if not self.fits(tokens):
            raise ValueError("batch is full; take() it first")
        if not self.items:
            self.opened_at = self.clock()
        self.items.append(item)
        self.tokens += tokens

    def room(self) -> int:
        return self.limits.max_size - len(self.items)

    def time_left(self) -> float:
        """Seconds until the deadline; max_wait when empty (nothing is waiting)."""
        if self.opened_at is None:
            return self.limits.max_wait_s
        return max(0.0, self.opened_at + self.limits.max_wait_s - self.clock())

    def ready(self) -> bool:
        """Full by size, or past its deadline (token-full batches close on the next fits())."""
        if not self.items:
            return False
        return len(self.items) >= self.limits.max_size or self.time_left() <= 0.0

    def take(self) -> list[T]:
        items, self.items, self.tokens, self.opened_at = self.items, [], 0, None
        return items

    def __len__(self) -> int:
        return len(self.items)


def fill(items: Iterable[T], limits: BatchLimits, tokens: Callable[[T], int]) -> Iterator[list[T]]:
    """Items already at hand in the worker's batches: in order, each closed by size or
    tokens as a ``Batcher`` closes it (no deadline: nothing is waiting for more)."""
    batcher: Batcher[T] = Batcher(limits)
    for item in items:
        n = tokens(item)
        if not batcher.fits(n):
            yield batcher.take()
        batcher.add(item, n)
    if batcher.items:
        yield batcher.take()
