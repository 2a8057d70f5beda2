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


def compare(first: dict[str, Any], second: dict[str, Any]) -> str:
    """Two bench reports' figures side by side (markdown), and how far those stable in
    both differ: the check that two runs agree."""
    a, b = first["spread"]["figures"], second["spread"]["figures"]
    shaky = set(first["spread"]["unstable"]) | set(second["spread"]["unstable"])
    lines = [
        "| figure | run 1 | run 2 | run 2 / run 1 | stable in both |",
        "|---|---|---|---|---|",
    ]
    worst, at = 0.0, ""
    for name in (n for n in a if n in b):
        x, y = a[name]["median"], b[name]["median"]
        stable = name not in shaky
        if stable and abs(y / x - 1) > worst:
            worst, at = abs(y / x - 1), name
        lines.append(
            f"| {name} | {x:,.1f} | {y:,.1f} | {y / x:.3f} | {'yes' if stable else 'no'} |"
        )
    lines += ["", f"figures stable in both runs differ by at most {100 * worst:.1f}% ({at})"]
    return "\n".join(lines)
