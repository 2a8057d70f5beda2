"""Every figure of a bench run with its repeats and their spread, and the ratios that only
stable figures may enter.

A figure whose runs spread by more than STABLE (max - min over the median) moved too
much within one run to hold a target: it is reported, named as unstable, and a ratio
that would use it is left out (None) instead of printed as if it held.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

STABLE = 0.10


def spread(runs: Sequence[float]) -> float:
    """(max - min) / median; 0 for a single run, which shows no spread (and is not stable
    evidence: ``Figures`` counts a lone run as unstable)."""
    middle = statistics.median(runs)
    return (max(runs) - min(runs)) / middle if middle else float("inf")


@dataclass
class Figures:
    """The runs of every figure by name; ``add`` returns the median the report shows."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, runs: Sequence[float]) -> float:
        self.runs[name] = [float(r) for r in runs]
        return float(statistics.median(runs))

    def stable(self, name: str) -> bool:
        runs = self.runs[name]
        return len(runs) > 1 and spread(runs) <= STABLE

    def unstable(self) -> list[str]:
        return [name for name in self.runs if not self.stable(name)]

    def ratio(self, top: str, bottom: str) -> float | None:
        """median(top) / median(bottom), or None when either figure is unstable."""
        if not (self.stable(top) and self.stable(bottom)):
            return None
        return statistics.median(self.runs[top]) / statistics.median(self.runs[bottom])

    def report(self) -> dict[str, Any]:
        """For the JSON report: each figure's median, runs and spread, and the unstable."""
        return {
            "figures": {
                name: {
                    "median": statistics.median(runs),
                    "runs": runs,
                    "spread": round(spread(runs), 4),
                }
                for name, runs in self.runs.items()
            },
            "unstable": self.unstable(),
            "stable_spread": STABLE,
        }
