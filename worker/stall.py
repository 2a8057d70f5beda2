"""Stalled partitions: lag behind them, and a committed offset that does not move.

A partition stalls when something keeps it from committing while records wait: a
client error that recurs at one offset, a commit that aborts every time, a model that
fails every batch. The process stays alive and its probes stay green, so the stall is
judged per partition, here, from what the loop sees: records waiting (the fetch position
is behind the high watermark, or records were read and not committed) while the offset
this worker commits has not moved for ``stall_after_s``. Pure: the pipeline feeds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

Partition = tuple[str, int]
# One partition_stalled line per partition per this long, however long it stays stalled.
LOG_EVERY_S = 60.0


@dataclass
class _State:
    since: float  # when the committed offset last moved, or the partition last had no lag
    committed: int | None = None
    seen_end: int = -1  # the last offset read + 1
    last_error: str | None = None
    logged_at: float | None = None


@dataclass(frozen=True)
class Stalled:
    topic: str
    partition: int
    seconds: float
    committed: int | None
    last_error: str | None
    log: bool  # this check owes the partition its (rate-limited) log line


class StallWatch:
    def __init__(self, stall_after_s: float, clock: Callable[[], float]) -> None:
        self.stall_after_s, self.clock = stall_after_s, clock
        self.parts: dict[Partition, _State] = {}

    def assigned(self, partitions: Iterable[Partition]) -> None:
        now = self.clock()
        for tp in partitions:
            self.parts.setdefault(tp, _State(since=now))

    def revoked(self, partitions: Iterable[Partition]) -> None:
        for tp in partitions:
            self.parts.pop(tp, None)

    def read(self, tp: Partition, offset: int) -> None:
        state = self.parts.get(tp)
        if state is not None:
            state.seen_end = max(state.seen_end, offset + 1)

    def error(self, tp: Partition, text: str) -> None:
        state = self.parts.get(tp)
        if state is not None:
            state.last_error = text

    def committed(self, offsets: Iterable[tuple[Partition, int]]) -> None:
        now = self.clock()
        for tp, offset in offsets:
            state = self.parts.get(tp)
            if state is not None and offset != state.committed:
                state.committed, state.since, state.last_error = offset, now, None

    def check(self, unread: Callable[[Partition], bool]) -> dict[Partition, Stalled | None]:
        """Every owned partition: its stall, or None. ``unread``: position < high watermark."""
        now = self.clock()
        out: dict[Partition, Stalled | None] = {}
        for tp, state in self.parts.items():
            pending = state.seen_end > (state.committed if state.committed is not None else -1)
            if not (pending or unread(tp)):
                state.since, state.logged_at = now, None
                out[tp] = None
                continue
            seconds = now - state.since
            if seconds < self.stall_after_s:
                out[tp] = None
                continue
            log = state.logged_at is None or now - state.logged_at >= LOG_EVERY_S
            if log:
                state.logged_at = now
            out[tp] = Stalled(tp[0], tp[1], seconds, state.committed, state.last_error, log)
        return out
