"""Evaluate an artifact on labelled examples and write report.md, metrics.json and plots."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from schemas.artifact import Manifest, ServedVariant
from schemas.labels import HEADS
from trainer.calibration import expected_calibration_error
from trainer.data.records import Example
from trainer.errors import TrainerError
from trainer.scoring import IGNORE_INDEX, business_cost, head_metrics
from worker.model import variants
from worker.model.artifact import LoadedModel
from worker.model.runner import Runner
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


def predict(classifier: Runner, examples: Sequence[Example], batch_size: int = 256) -> Predictions:
    """Calibrated probabilities and OOD scores, in example order, from the worker's own
    runner (torch padding-free where the encoder allows, as served)."""
    out = classifier.predict_texts([ex.text for ex in examples], batch_size)
    scores = out.unfamiliarity if out.unfamiliarity is not None else np.full(len(examples), np.nan)
    return Predictions(dict(out.probs), scores)


def runtime(loaded: LoadedModel, variant: ServedVariant = "torch-fp32") -> Runner:
    """The worker's runner for an artifact as ``variant`` (MODEL__VARIANT's names), on the
    device it was loaded on."""
    device = next(loaded.model.parameters()).device.type
    reason = variants.unavailable(variant, loaded, device)
    if reason is not None:
        raise TrainerError(f"variant {variant} cannot run here: {reason}")
    return variants.build(variant, loaded, device)


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
    classifier: Runner, texts: Sequence[str], batch_size: int = 64, repeats: int = 30
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


@dataclass(frozen=True)
class SourceEvaluation:
    """One test set scored per collection."""

    results: list[dict[str, Any]]  # per collection: heads, cost, routed outcomes, OOD figures
    curves: dict[str, Any]  # per collection: risk-coverage
    errors: dict[str, Any]  # per collection: the most confident errors
    predictions: Predictions  # the whole set's, in example order


def evaluate_sources(
    classifier: Runner, examples: Sequence[Example], split: str
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
    classifier: Runner, validation: Sequence[Example], tests: Sequence[Example]
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


def random_texts(examples: Sequence[Example], n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [ex.text for ex in rng.sample(list(examples), min(n, len(examples)))]
