"""The promotion rule: may a candidate model replace the serving one? A pure function of
both models' scores on the same sets (``trainer.scorecard`` computes them).

The candidate is promoted when all of these hold:

1. On recent traffic (the newest agents' corrections, held back from its training) its
   mean accuracy over the heads the agents gave is higher than the current model's.
2. On every fixed test set no head loses more than 0.5 points of accuracy, and intent
   macro-F1 loses no more than 1 point (the limits a variant of one artifact must keep
   too, schemas.artifact.VariantResult).
3. False auto-resolves after routing, each model with its own policy, do not rise, on
   recent traffic or on any fixed set: an auto-resolve nobody looks at is the costly error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

MAX_ACCURACY_DROP: Final = 0.005  # per head, on each fixed set
MAX_MACRO_F1_DROP: Final = 0.01  # intent, on each fixed set
# Differences smaller than this are float noise, not a change.
_TOLERANCE: Final = 1e-9

SetKind = Literal["recent", "fixed"]


@dataclass(frozen=True)
class SetScore:
    """One model on one set of messages."""

    n: int
    accuracy: dict[str, float] = field(default_factory=dict)  # heads with a label only
    labelled: dict[str, int] = field(default_factory=dict)  # messages with a label per head
    intent_macro_f1: float | None = None
    false_auto_resolves: int = 0

    def mean_accuracy(self) -> float | None:
        """Over the heads with at least one label (on recent traffic: the heads agents gave)."""
        values = list(self.accuracy.values())
        return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Pair:
    """Both models on the same set."""

    name: str
    kind: SetKind
    current: SetScore
    candidate: SetScore


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]  # why not, when rejected; what was won, when promoted


def points(change: float) -> str:
    """An accuracy change in percentage points, signed: +1.25 pts."""
    return f"{change * 100:+.2f} pts"


def decide(pairs: Sequence[Pair]) -> Verdict:
    """Apply the three conditions of the module docstring to ``pairs``."""
    failures: list[str] = []
    gains: list[str] = []
    # Step 1: better on recent traffic.
    recent = [p for p in pairs if p.kind == "recent" and p.current.n > 0]
    if not recent:
        failures.append("no recent traffic held back: nothing shows the candidate is better")
    for p in recent:
        before, after = p.current.mean_accuracy(), p.candidate.mean_accuracy()
        if before is None or after is None:
            failures.append(f"{p.name}: no head labelled")
        elif after > before + _TOLERANCE:
            gains.append(
                f"{p.name}: mean accuracy {before:.4f} -> {after:.4f} ({points(after - before)})"
            )
        else:
            failures.append(f"{p.name}: mean accuracy {before:.4f} -> {after:.4f}, not higher")
    # Step 2: no loss beyond the limits on the fixed sets.
    for p in pairs:
        if p.kind != "fixed":
            continue
        for head, before in p.current.accuracy.items():
            after = p.candidate.accuracy.get(head, 0.0)
            if before - after > MAX_ACCURACY_DROP + _TOLERANCE:
                failures.append(
                    f"{p.name}: {head} accuracy {points(after - before)} "
                    f"(limit -{MAX_ACCURACY_DROP * 100:.2f})"
                )
        f1_before, f1_after = p.current.intent_macro_f1, p.candidate.intent_macro_f1
        if f1_before is not None and f1_before - (f1_after or 0.0) > MAX_MACRO_F1_DROP + _TOLERANCE:
            failures.append(
                f"{p.name}: intent macro-F1 {points((f1_after or 0.0) - f1_before)} "
                f"(limit -{MAX_MACRO_F1_DROP * 100:.2f})"
            )
    # Step 3: false auto-resolves do not rise anywhere.
    for p in pairs:
        before_n, after_n = p.current.false_auto_resolves, p.candidate.false_auto_resolves
        if after_n > before_n:
            failures.append(f"{p.name}: false auto-resolves {before_n} -> {after_n}")
    if failures:
        return Verdict(False, failures)
    fixed = sum(p.kind == "fixed" for p in pairs)
    gains.append(f"no loss beyond the limits on {fixed} fixed sets")
    gains.append("false auto-resolves did not rise")
    return Verdict(True, gains)
