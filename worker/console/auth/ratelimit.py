"""Login failures, counted per user name and per address. Pure (a clock is given).

OWASP's guidance: slow or refuse guessing, per account (one name, many addresses) and
per source (one address, many names). A key with ``max_failures`` failures inside
``window_s`` is refused until the oldest of them leaves the window; the refusal is
decided before any password is checked, so it is no oracle. In memory and bounded: the
least recently failed keys are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

MAX_KEYS: Final = 10_000


class FailureLimit:
    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float],
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        times = self._recent(key)
        if len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_s - self.clock())

    def failed(self, key: str) -> None:
        times = self._recent(key)
        times.append(self.clock())
        while len(times) > self.max_failures:
            times.popleft()
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float]:
        times = self._failures.get(key, deque())
        cutoff = self.clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def undo(self, key: str) -> None:
        """Takes back the latest failure of ``key`` (counted before a check that passed)."""
        times = self._failures.get(key)
        if times:
            times.pop()
