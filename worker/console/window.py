"""The live view's state: per-second counts by route over the last minutes, the low-
confidence rate, and the last escalations and dead letters. Pure; one thread uses it.

Seconds are the records' Kafka timestamps, so a console started late still draws the
minute it replays at startup in the right place. A record older than the window is kept
in the lists but not drawn (a rate of long ago is no rate now); one stamped in the future
(a producer's clock ahead) is drawn at the second it was read.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from schemas.messages import ROUTES

DLQ = "dead_letter"
LOW = "low_confidence"


class Window:
    def __init__(self, seconds: int = 300, recent: int = 20) -> None:
        self.seconds = seconds
        self._counts: dict[int, Counter[str]] = {}
        self.escalations: deque[dict[str, Any]] = deque(maxlen=recent)
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=recent)
        self.unreadable = 0

    def add(self, view: dict[str, Any], summary: dict[str, Any], now_s: float) -> None:
        """Count one view (``views.routed`` / ``views.dead_letter``); keep its summary."""
        kind = view["kind"]
        if kind == "unreadable":
            self.unreadable += 1
            return
        self._prune(now_s)
        second = self._second(view.get("at_ms"), now_s)
        counts = Counter[str]() if second is None else self._counts.setdefault(second, Counter())
        if kind == "dead_letter":
            counts[DLQ] += 1
            self.dead_letters.appendleft(summary)
            return
        counts[view["route"]] += 1
        counts[LOW] += view["low_confidence"]
        if view["route"] == "escalate":
            self.escalations.appendleft(summary)

    def series(self, now_s: float, step: int = 5) -> dict[str, Any]:
        """Messages per second by route (and DLQ), one point per ``step`` seconds, oldest
        first; the last point is the newest complete step."""
        end = int(now_s) // step * step
        starts = range(end - self.seconds, end, step)
        out: dict[str, list[float]] = {}
        for name in (*ROUTES, DLQ):
            out[name] = [
                round(sum(self._count(s + i, name) for i in range(step)) / step, 2) for s in starts
            ]
        return {"end_s": end, "step_s": step, "rates": out}

    def low_confidence(self, now_s: float, span: int = 60) -> dict[str, int]:
        """Routed results and how many of them fell back (low_confidence, unfamiliar)."""
        start = int(now_s) - span
        total = low = 0
        for second, counts in self._counts.items():
            if second > start:
                total += sum(counts[r] for r in ROUTES)
                low += counts[LOW]
        return {"span_s": span, "routed": total, "low": low}

    def _count(self, second: int, name: str) -> int:
        counts = self._counts.get(second)
        return 0 if counts is None else counts[name]

    def _second(self, at_ms: int | None, now_s: float) -> int | None:
        if at_ms is None or at_ms / 1000 > now_s:
            return int(now_s)
        if at_ms / 1000 <= now_s - self.seconds:
            return None
        return int(at_ms / 1000)

    def _prune(self, now_s: float) -> None:
        if len(self._counts) > self.seconds + 10:
            oldest = int(now_s) - self.seconds - 1
            for second in [s for s in self._counts if s < oldest]:
                del self._counts[second]
