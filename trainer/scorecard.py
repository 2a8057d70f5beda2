"""`support-trainer compare`: both models scored on the same sets, and the table of them.

Each model runs as the worker runs it (``evaluation.runtime``) and routes with its own
policy (``evaluation.policy_for``: its confidence floor and OOD threshold), so the false
auto-resolves are those each would let through in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.labels import HEADS
from trainer import evaluation
from trainer.compare import Pair, SetKind, SetScore, Verdict, points
from trainer.data.records import Example
from trainer.scoring import IGNORE_INDEX, head_metrics
from worker.model.artifact import LoadedModel, load_artifact
from worker.model.runner import Runner


@dataclass(frozen=True)
class Contender:
    """A model as compare runs it."""

    loaded: LoadedModel
    classifier: Runner

    @property
    def title(self) -> str:
        m = self.loaded.manifest
        return f"{m.name} {m.version} ({self.loaded.path})"


def load(path: Path) -> Contender:
    loaded = load_artifact(path)
    return Contender(loaded, evaluation.runtime(loaded))


def set_score(
    examples: Sequence[Example], pred: evaluation.Predictions, contender: Contender
) -> SetScore:
    """Per-head accuracy where a label is given, intent macro-F1, and false auto-resolves
    after the model's own routing."""
    accuracy, labelled, macro_f1 = {}, {}, None
    for head, names in HEADS.items():
        y = evaluation.label_ids(examples, head)
        known = int((y != IGNORE_INDEX).sum())
        if not known:
            continue
        m = head_metrics(y, pred.probs[head].argmax(1), len(names))
        accuracy[head], labelled[head] = m["accuracy"], known
        if head == "intent":
            macro_f1 = m["macro_f1"]
    policy = evaluation.policy_for(contender.loaded.manifest)
    routed = evaluation.routed(examples, pred, policy)
    return SetScore(len(examples), accuracy, labelled, macro_f1, routed["false_auto_resolves"])


def pairs(
    current: Contender,
    candidate: Contender,
    sets: dict[str, list[Example]],
    kind: SetKind,
    *,
    per_collection: bool = True,
) -> list[Pair]:
    """One pair per set, or per collection within each set (named as evaluate names
    them: "banking77 test_noisy"); each model predicts each set once."""
    out: list[Pair] = []
    for split, examples in sets.items():
        if not examples:
            out.append(Pair(split, kind, SetScore(0), SetScore(0)))
            continue
        preds = [evaluation.predict(c.classifier, examples) for c in (current, candidate)]
        groups = (
            evaluation.by_collection(examples, split)
            if per_collection
            else {split: list(range(len(examples)))}
        )
        for name, index in groups.items():
            subset = [examples[i] for i in index]
            a, b = (
                set_score(subset, p.subset(index), c)
                for p, c in zip(preds, (current, candidate), strict=True)
            )
            out.append(Pair(name if name == split else f"{name} {split}", kind, a, b))
    return out


def table(all_pairs: Sequence[Pair]) -> str:
    """current vs candidate vs change, per set and measure (markdown)."""
    lines = [
        "| set | n | measure | current | candidate | change |",
        "|---|---|---|---|---|---|",
    ]
    for p in all_pairs:
        cur, cand = p.current, p.candidate
        rows: list[tuple[str, str, str, str]] = []
        for head in HEADS:
            if head in cur.accuracy:
                a, b = cur.accuracy[head], cand.accuracy[head]
                label = f"{head} accuracy"
                if p.kind == "recent":
                    label += f" ({cur.labelled[head]} labelled)"
                rows.append((label, f"{a:.4f}", f"{b:.4f}", points(b - a)))
        if p.kind == "recent":
            a_mean, b_mean = cur.mean_accuracy(), cand.mean_accuracy()
            if a_mean is not None and b_mean is not None:
                rows.append(
                    (
                        "mean accuracy, heads given",
                        f"{a_mean:.4f}",
                        f"{b_mean:.4f}",
                        points(b_mean - a_mean),
                    )
                )
        if cur.intent_macro_f1 is not None and cand.intent_macro_f1 is not None:
            a, b = cur.intent_macro_f1, cand.intent_macro_f1
            rows.append(("intent macro-F1", f"{a:.4f}", f"{b:.4f}", points(b - a)))
        n = max(1, cur.n)
        rows.append(
            (
                "false auto-resolves",
                f"{cur.false_auto_resolves} ({cur.false_auto_resolves / n:.1%})",
                f"{cand.false_auto_resolves} ({cand.false_auto_resolves / n:.1%})",
                f"{cand.false_auto_resolves - cur.false_auto_resolves:+d}",
            )
        )
        for i, (measure, a_text, b_text, change) in enumerate(rows):
            name, size = (p.name, str(cur.n)) if i == 0 else ("", "")
            lines.append(f"| {name} | {size} | {measure} | {a_text} | {b_text} | {change} |")
    return "\n".join(lines)


def verdict_line(verdict: Verdict, reject_code: int) -> str:
    if verdict.promote:
        return "verdict: PROMOTE: " + "; ".join(verdict.reasons)
    return f"verdict: REJECT (exit {reject_code}): " + "; ".join(verdict.reasons)


def to_json(
    current: Contender, candidate: Contender, all_pairs: Sequence[Pair], verdict: Verdict
) -> dict[str, Any]:
    return {
        "current": current.loaded.model_info,
        "candidate": candidate.loaded.model_info,
        "sets": [asdict(p) for p in all_pairs],
        "verdict": asdict(verdict),
    }
