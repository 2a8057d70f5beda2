"""Evaluate an artifact on labelled examples and write report.md, metrics.json and plots."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schemas.artifact import Manifest
from schemas.labels import HEADS
from trainer.calibration import expected_calibration_error
from trainer.data.records import Example
from trainer.scoring import IGNORE_INDEX, business_cost, head_metrics
from worker.model.artifact import LoadedModel
from worker.model.classifier import Classifier
from worker.routing import RoutingPolicy

TOP_FAILURES = 20


def label_ids(examples: Sequence[Example], head: str) -> np.ndarray:
    names = HEADS[head]
    return np.array([names.index(v) if (v := ex.label(head)) else IGNORE_INDEX for ex in examples])


@dataclass(frozen=True)
class Predictions:
    """What the model says about N examples: calibrated probabilities per head [N, C] and
    the OOD score [N] (NaN without a scorer)."""

    probs: dict[str, np.ndarray]
    unfamiliarity: np.ndarray

    def subset(self, index: Sequence[int]) -> Predictions:
        rows = np.asarray(index, dtype=np.int64)
        return Predictions({h: p[rows] for h, p in self.probs.items()}, self.unfamiliarity[rows])


def predict(
    classifier: Classifier, examples: Sequence[Example], batch_size: int = 256
) -> Predictions:
    """Calibrated probabilities and OOD scores, in example order, from the worker's own
    ``Classifier`` (padding-free where the encoder allows, as served)."""
    out = classifier.predict_texts([ex.text for ex in examples], batch_size)
    scores = out.unfamiliarity if out.unfamiliarity is not None else np.full(len(examples), np.nan)
    return Predictions(dict(out.probs), scores)


def runtime(loaded: LoadedModel, quantize: str = "none") -> Classifier:
    """The worker's classifier for an artifact, in fp32 on the device it was loaded on."""
    device = next(loaded.model.parameters()).device
    return Classifier(loaded, device=device.type, dtype="float32", quantize=quantize)


def by_collection(examples: Sequence[Example], default: str = "data") -> dict[str, list[int]]:
    """Example indices per collection, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.collection or default, []).append(i)
    return groups


def policy_for(manifest: Manifest) -> RoutingPolicy:
    """The worker's default policy for this artifact: its confidence and OOD thresholds."""
    return RoutingPolicy(manifest.min_action_confidence, max_unfamiliarity=manifest.ood.threshold)


def routed(examples: Sequence[Example], pred: Predictions, policy: RoutingPolicy) -> dict[str, Any]:
    """What the worker's routing policy does with these predictions: shares per reason,
    and the false auto-resolves it lets through (a share of all messages)."""
    actions = HEADS["action"]
    reasons: dict[str, int] = {}
    auto = false_auto = 0
    for i, ex in enumerate(examples):
        labels = {h: HEADS[h][int(p[i].argmax())] for h, p in pred.probs.items()}
        confidences = {h: float(p[i].max()) for h, p in pred.probs.items()}
        decision = policy.decide(labels, confidences, float(pred.unfamiliarity[i]))
        reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
        if decision.route == "auto_resolve":
            auto += 1
            false_auto += ex.action is not None and ex.action != actions[0]
    n = max(1, len(examples))
    # Calibration where the confidence is used: the messages the OOD check lets through.
    familiar = (
        pred.unfamiliarity <= policy.max_unfamiliarity
        if policy.max_unfamiliarity is not None
        else np.ones(len(examples), dtype=bool)
    )
    y = label_ids(examples, "intent")
    return {
        "policy": policy.name,
        "intent_ece_familiar": expected_calibration_error(
            pred.probs["intent"][familiar], y[familiar]
        ),
        "auto_resolved": auto / n,
        "false_auto_resolves": false_auto,
        "false_auto_resolve_rate": false_auto / n,
        "reasons": {k: v / n for k, v in sorted(reasons.items())},
    }


def risk_coverage(
    examples: Sequence[Example], pred: Predictions, min_confidence: float
) -> dict[str, list[float]]:
    """Auto-resolve's risk (false auto-resolves / all messages) against its coverage
    (auto-resolved / all messages), two ways: sweeping the OOD threshold at the artifact's
    action confidence, and sweeping the action confidence with no OOD check."""
    action = pred.probs["action"]
    says_auto = action.argmax(1) == HEADS["action"].index("auto_resolve")
    truth = np.array([ex.action for ex in examples], dtype=object)
    wrong = says_auto & (truth != "auto_resolve") & (truth != None)  # noqa: E711 - elementwise
    n = max(1, len(examples))

    def sweep(key: np.ndarray, keep: np.ndarray) -> tuple[list[float], list[float]]:
        order = np.argsort(key, kind="stable")  # admit the lowest keys first
        covered = np.cumsum(keep[order]) / n
        risk = np.cumsum((wrong & keep)[order]) / n
        step = max(1, len(order) // 200)  # about 200 points per curve
        last = len(order) - 1  # the end point is always on the curve
        points = sorted({*range(0, len(order), step), last})
        return covered[points].tolist(), risk[points].tolist()

    confident = says_auto & (action.max(1) >= min_confidence)
    ood_cov, ood_risk = sweep(np.nan_to_num(pred.unfamiliarity, nan=np.inf), confident)
    conf_cov, conf_risk = sweep(-action.max(1), says_auto)
    return {
        "ood_coverage": ood_cov,
        "ood_risk": ood_risk,
        "confidence_coverage": conf_cov,
        "confidence_risk": conf_risk,
    }


def ood_auroc(familiar: np.ndarray, unfamiliar: np.ndarray) -> float:
    """P(an unfamiliar message scores above a familiar one): 0.5 is chance, 1.0 perfect."""
    scores = np.concatenate([familiar, unfamiliar])
    ranks = scores.argsort().argsort() + 1.0
    n1, n2 = len(familiar), len(unfamiliar)
    return float((ranks[n1:].sum() - n2 * (n2 + 1) / 2) / max(1, n1 * n2))


def plot_risk_coverage(
    curves: dict[str, dict[str, Any]],
    operating: dict[str, dict[str, Any]],
    path: Path,
    title: str,
) -> None:
    """One panel per source: both sweeps, and the artifact's operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=True):
        ax.plot(c["ood_coverage"], c["ood_risk"], label="OOD threshold sweep (action conf fixed)")
        ax.plot(
            c["confidence_coverage"],
            c["confidence_risk"],
            "--",
            label="action confidence sweep (no OOD)",
        )
        op = operating[name]
        ax.plot(
            [op["auto_resolved"]],
            [op["false_auto_resolve_rate"]],
            "ro",
            label=f"operating point ({op['false_auto_resolve_rate']:.1%} false)",
        )
        ax.set_xlabel("auto-resolved (share of messages)")
        ax.set_ylabel("false auto-resolves (share of messages)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def score(examples: Sequence[Example], probs: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    """Per-head metrics, ECE and the business cost for one data set."""
    result: dict[str, Any] = {"dataset": name, "n": len(examples), "heads": {}}
    for head, labels in HEADS.items():
        y = label_ids(examples, head)
        pred = probs[head].argmax(1)
        metrics = head_metrics(y, pred, len(labels))
        metrics["ece"] = expected_calibration_error(probs[head], y)
        metrics["labels"] = list(labels)
        result["heads"][head] = metrics
    accs = [result["heads"][h]["accuracy"] for h in HEADS]
    result["overall_accuracy"] = float(np.mean(accs))
    actions = HEADS["action"]
    result.update(
        business_cost(
            [ex.action for ex in examples], [actions[i] for i in probs["action"].argmax(1)]
        )
    )
    return result


def random_baseline(examples: Sequence[Example], seed: int = 42) -> dict[str, Any]:
    """Uniformly random labels per head, scored like the model."""
    rng = np.random.default_rng(seed)
    probs = {h: np.eye(len(ls))[rng.integers(0, len(ls), len(examples))] for h, ls in HEADS.items()}
    return score(examples, probs, "random baseline")


def failures(
    examples: Sequence[Example], probs: dict[str, np.ndarray], k: int = TOP_FAILURES
) -> list[dict[str, Any]]:
    """The k most confident errors: ranked by the highest confidence of a wrong head."""
    rows: list[tuple[float, int, dict[str, Any]]] = []
    for i, ex in enumerate(examples):
        wrong: dict[str, dict[str, Any]] = {}
        for head, labels in HEADS.items():
            truth, guess = ex.label(head), int(probs[head][i].argmax())
            if truth is not None and labels[guess] != truth:
                wrong[head] = {
                    "predicted": labels[guess],
                    "expected": truth,
                    "confidence": round(float(probs[head][i][guess]), 4),
                }
        if wrong:
            top = max(w["confidence"] for w in wrong.values())
            rows.append((top, i, {"text": ex.text, "errors": wrong}))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [r[2] for r in rows[:k]]


def latency(
    classifier: Classifier, texts: Sequence[str], batch_size: int = 64, repeats: int = 30
) -> dict[str, Any]:
    """Median wall time for one message and for one batch, tokenization included."""

    def run(batch: Sequence[str]) -> float:
        started = time.perf_counter()
        classifier.predict(classifier.tokenize(batch).ids)
        return time.perf_counter() - started

    batch = list(texts[:batch_size])
    run(batch)  # warm-up: first calls allocate
    single = statistics.median(run([texts[i % len(texts)]]) for i in range(repeats))
    batched = statistics.median(run(batch) for _ in range(max(3, repeats // 3)))
    return {
        "single_ms": single * 1000,
        "batch_size": len(batch),
        "batch_ms": batched * 1000,
        "batch_msgs_per_s": len(batch) / batched,
        "threads": torch.get_num_threads(),
        "device": str(classifier.device),
        "precision": classifier.precision,
    }


def summary_table(results: Sequence[dict[str, Any]]) -> str:
    """The notebook's comparison table: one row per data set or baseline."""
    head = (
        "| model / data | overall | intent | intent macro-F1 | urgency | sentiment | action "
        "| business cost | false esc. | false auto |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        h = r["heads"]
        lines.append(
            f"| {r['dataset']} | {r['overall_accuracy']:.4f} | {h['intent']['accuracy']:.4f} | "
            f"{h['intent']['macro_f1']:.4f} | {h['urgency']['accuracy']:.4f} | "
            f"{h['sentiment']['accuracy']:.4f} | {h['action']['accuracy']:.4f} | "
            f"{r['business_cost']:.3f} | {r['false_escalations']} | {r['false_auto_resolves']} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class SourceEvaluation:
    """One test set scored per collection."""

    results: list[dict[str, Any]]  # per collection: heads, cost, routed outcomes, OOD figures
    curves: dict[str, Any]  # per collection: risk-coverage
    errors: dict[str, Any]  # per collection: the most confident errors
    predictions: Predictions  # the whole set's, in example order


def evaluate_sources(
    classifier: Classifier, examples: Sequence[Example], split: str
) -> SourceEvaluation:
    """Score a test set per collection with one pass of the model."""
    pred = predict(classifier, examples)
    trained = set(classifier.manifest.training.sources)
    policy = policy_for(classifier.manifest)
    groups = by_collection(examples)
    familiar = np.concatenate(
        [pred.unfamiliarity[ix] for name, ix in groups.items() if name in trained] or [np.empty(0)]
    )
    results, curves, errors = [], {}, {}
    for name, index in groups.items():
        subset, sub = [examples[i] for i in index], pred.subset(index)
        dataset = name if name == split else f"{name} {split}"  # a file is its own source
        result = score(subset, sub.probs, dataset)
        result["collection"], result["split"] = name, split
        result["trained_on"] = name in trained
        result["routed"] = routed(subset, sub, policy)
        result["unfamiliarity_median"] = float(np.nanmedian(sub.unfamiliarity))
        if name not in trained and len(familiar):
            result["ood_auroc"] = ood_auroc(familiar, sub.unfamiliarity)
        results.append(result)
        curves[name] = risk_coverage(subset, sub, classifier.manifest.min_action_confidence)
        errors[dataset] = failures(subset, sub.probs)
    return SourceEvaluation(results, curves, errors, pred)


OPERATING_QUANTILES = (0.8, 0.85, 0.9, 0.95, 0.975, 0.99)


def operating_points(
    classifier: Classifier, validation: Sequence[Example], tests: Sequence[Example]
) -> list[dict[str, Any]]:
    """The routing outcome per test source at OOD thresholds placed at quantiles of the
    in-distribution validation scores: the candidates an operating point is chosen from."""
    m = classifier.manifest
    val_scores = predict(classifier, validation).unfamiliarity
    pred = predict(classifier, tests)
    groups = by_collection(tests)
    rows = []
    for q in OPERATING_QUANTILES:
        threshold = float(np.quantile(val_scores, q))
        policy = RoutingPolicy(m.min_action_confidence, max_unfamiliarity=threshold)
        per_source = {
            name: routed([tests[i] for i in ix], pred.subset(ix), policy)
            for name, ix in groups.items()
        }
        rows.append({"quantile": q, "threshold": threshold, "sources": per_source})
    return rows


def operating_table(rows: Sequence[dict[str, Any]], current: float) -> str:
    sources = list(rows[0]["sources"])
    lines = [
        "| validation quantile | threshold | "
        + " | ".join(f"{s}: auto-resolved / false auto / unfamiliar" for s in sources)
        + " |",
        "|---" * (2 + len(sources)) + "|",
    ]
    for row in rows:
        mark = " (artifact)" if abs(row["quantile"] - current) < 1e-9 else ""
        cells = " | ".join(
            f"{r['auto_resolved']:.1%} / {r['false_auto_resolve_rate']:.1%} / "
            f"{r['reasons'].get('unfamiliar', 0.0):.1%}"
            for r in row["sources"].values()
        )
        lines.append(f"| {row['quantile']}{mark} | {row['threshold']:.3f} | {cells} |")
    return "\n".join(lines)


def source_table(results: Sequence[dict[str, Any]]) -> str:
    """Per source: intent, action, cost, calibration, and what the routing policy does."""
    lines = [
        "| source | trained on it | n | intent acc | intent macro-F1 | action acc | business cost "
        "| intent ECE (all / familiar) | auto-resolved | false auto-resolves (routed) | unfamiliar "
        "| OOD AUROC |",
        "|" + "---|" * 12,
    ]
    for r in results:
        if "routed" not in r:
            continue
        h, rt = r["heads"], r["routed"]
        auroc = f"{r['ood_auroc']:.3f}" if "ood_auroc" in r else "-"
        lines.append(
            f"| {r['dataset']} | {'yes' if r['trained_on'] else '**no**'} | {r['n']} | "
            f"{h['intent']['accuracy']:.4f} | {h['intent']['macro_f1']:.4f} | "
            f"{h['action']['accuracy']:.4f} | {r['business_cost']:.3f} | "
            f"{h['intent']['ece']:.4f} / {rt['intent_ece_familiar']:.4f} | "
            f"{rt['auto_resolved']:.1%} | "
            f"{rt['false_auto_resolves']} ({rt['false_auto_resolve_rate']:.1%}) | "
            f"{rt['reasons'].get('unfamiliar', 0.0):.1%} | {auroc} |"
        )
    return "\n".join(lines)


def transfer_table(models: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
    """Rows: models (named by what they trained on); columns: the test collections.

    Each cell: intent macro-F1 / action accuracy / routed false auto-resolves / intent ECE.
    """
    sources = list(
        dict.fromkeys(r["collection"] for _, rs in models for r in rs if "collection" in r)
    )
    lines = [
        "| trained on | " + " | ".join(sources) + " |",
        "|---" * (len(sources) + 1) + "|",
    ]
    for label, results in models:
        cells = []
        for source in sources:
            r = next((r for r in results if r.get("collection") == source), None)
            if r is None:
                cells.append("-")
                continue
            cells.append(
                f"{r['heads']['intent']['macro_f1']:.3f} / {r['heads']['action']['accuracy']:.3f}"
                f" / {r['routed']['false_auto_resolve_rate']:.1%}"
                f" / {r['heads']['intent']['ece']:.3f}" + ("" if r["trained_on"] else " (transfer)")
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Each cell: intent macro-F1 / action accuracy / false auto-resolves after "
        "routing (share of messages) / intent ECE."
    )
    return "\n".join(lines)


def format_failures(errors: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for name, rows in errors.items():
        lines += [f"## {len(rows)} most confident errors: {name}", ""]
        for f in rows:
            wrong = (
                f"{h} {e['predicted']} (p={e['confidence']}) not {e['expected']}"
                for h, e in f["errors"].items()
            )
            lines.append(f"- `{f['text']}`: " + ", ".join(wrong))
        lines.append("")
    return "\n".join(lines)


def plot_confusions(result: dict[str, Any], out_dir: Path) -> list[str]:
    """One PNG per head: the confusion matrix with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    slug = result["dataset"].replace(" ", "_").replace("/", "_")
    for head, metrics in result["heads"].items():
        m = np.array(metrics["confusion"])
        fig, ax = plt.subplots(figsize=(1.2 * len(m) + 2.5, 1.0 * len(m) + 2))
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(m)), metrics["labels"], rotation=35, ha="right")
        ax.set_yticks(range(len(m)), metrics["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{head} ({result['dataset']}), acc {metrics['accuracy']:.3f}")
        for (i, j), v in np.ndenumerate(m):
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if v > m.max() / 2 else "black",
                fontsize=8,
            )
        fig.tight_layout()
        name = f"confusion_{slug}_{head}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def write_report(
    out_dir: Path, results: list[dict[str, Any]], extra: dict[str, Any], title: str
) -> str:
    """report.md + metrics.json + PNGs into out_dir; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        r["dataset"]: plot_confusions(r, out_dir)
        for r in results
        if r["dataset"] != "random baseline"
    }
    metrics = {"results": results, **extra}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    md = [f"# {title}", "", summary_table(results), ""]
    for key, value in extra.items():
        if key in ("failures", "risk_coverage"):
            continue
        md += [f"## {key}", "", *_table(value), ""]
    for r in results:
        if r["dataset"] == "random baseline":
            continue
        md += [
            f"## {r['dataset']}: per head",
            "",
            "| head | accuracy | macro-F1 | ECE |",
            "|---|---|---|---|",
        ]
        md += [
            f"| {h} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.4f} |"
            for h, m in r["heads"].items()
        ]
        md += ["", *[f"![{p}]({p})" for p in plots[r["dataset"]]], ""]
    if any("routed" in r for r in results):
        md += ["## per source", "", source_table(results), ""]
    if extra.get("risk_coverage"):
        curves = extra["risk_coverage"]
        operating: dict[str, Any] = {}
        for r in results:  # the curves are the first test set's, which comes first here
            if r.get("collection") in curves:
                operating.setdefault(r["collection"], r["routed"])
        plot_risk_coverage(curves, operating, out_dir / "risk_coverage.png", title)
        md += ["## risk-coverage (noisy test)", "", "![risk-coverage](risk_coverage.png)", ""]
    md.append(format_failures(extra.get("failures", {})))
    text = "\n".join(md)
    (out_dir / "report.md").write_text(text)
    return text


def _table(value: Any) -> list[str]:
    """A dict of dicts as a markdown table, a flat dict as key | value rows."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        cols = list(dict.fromkeys(k for v in value.values() for k in v))
        rows = [
            f"| {name} | " + " | ".join(_cell(v.get(c)) for c in cols) + " |"
            for name, v in value.items()
        ]
        return ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|", *rows]
    if isinstance(value, dict):
        return ["| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in value.items()]]
    return ["```json", json.dumps(value, indent=2), "```"]


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def random_texts(examples: Sequence[Example], n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [ex.text for ex in rng.sample(list(examples), min(n, len(examples)))]
