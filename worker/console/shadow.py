"""How often a candidate model in shadow agrees with the serving model, per head and on
the route, per candidate version. Pure; one thread uses it.

Each ``ShadowResult`` carries its own verdicts (``agree``: per head and ``route``), made
by the shadow worker on the same batch; this module counts them. Only the four heads and
the route are counted: the keys come from the topic, so an unknown one is left out rather
than letting a record grow the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from schemas.labels import HEADS

MAX_CANDIDATES: Final = 20
MAX_SERVING: Final = 8  # serving versions named per candidate
COMPARED: Final = (*HEADS, "route")


@dataclass
class _Candidate:
    name: str
    results: int = 0
    agree: dict[str, list[int]] = field(default_factory=dict)  # key -> [agree, n]
    serving: dict[str, int] = field(default_factory=dict)  # serving version -> results
    first_ms: int | None = None
    last_ms: int | None = None

    def report(self, version: str) -> dict[str, Any]:
        return {
            "version": version,
            "name": self.name,
            "n": self.results,
            "agree": {
                k: {"agree": a, "n": n, "rate": a / n if n else None}
                for k in COMPARED
                for a, n in [self.agree.get(k, [0, 0])]
            },
            "serving": dict(sorted(self.serving.items(), key=lambda kv: -kv[1])),
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
        }


class ShadowAgreement:
    def __init__(self, max_candidates: int = MAX_CANDIDATES) -> None:
        self.max_candidates = max_candidates
        self._candidates: dict[str, _Candidate] = {}
        self._order: dict[str, int] = {}  # version -> arrival of its latest result
        self._arrivals = 0

    def add(
        self,
        candidate: tuple[str, str],
        serving_version: str,
        agree: dict[str, bool],
        at_ms: int | None,
    ) -> None:
        """One shadow result: the candidate's (name, version), the serving model's
        version, the verdicts, and the record's timestamp."""
        name, version = candidate
        c = self._candidates.get(version)
        if c is None:
            c = self._candidates[version] = _Candidate(name)
        c.results += 1
        for key in COMPARED:
            if key in agree:
                tally = c.agree.setdefault(key, [0, 0])
                tally[0] += bool(agree[key])
                tally[1] += 1
        if serving_version in c.serving or len(c.serving) < MAX_SERVING:
            c.serving[serving_version] = c.serving.get(serving_version, 0) + 1
        if at_ms is not None:
            c.first_ms = at_ms if c.first_ms is None else min(c.first_ms, at_ms)
            c.last_ms = at_ms if c.last_ms is None else max(c.last_ms, at_ms)
        self._arrivals += 1
        self._order[version] = self._arrivals
        if len(self._candidates) > self.max_candidates:  # the one not heard from longest
            stale = min(self._order, key=self._order.__getitem__)
            del self._candidates[stale], self._order[stale]

    def report(self) -> dict[str, Any]:
        """Per candidate version, the one with the latest result first."""
        versions = sorted(self._order, key=lambda v: -self._order[v])
        return {
            "compared": list(COMPARED),
            "candidates": [self._candidates[v].report(v) for v in versions],
        }
