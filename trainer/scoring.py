"""Classification metrics on label-id arrays (numpy only; -100 rows are skipped)."""

from __future__ import annotations

from typing import Any

import numpy as np

IGNORE_INDEX = -100  # an unknown label: skipped by metrics, masked in the loss
FALSE_ESCALATION_COST = 10.0
FALSE_AUTO_RESOLVE_COST = 5.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[C_true, C_pred] counts."""
    keep = y_true != IGNORE_INDEX
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true[keep], y_pred[keep]), 1)
    return m


def head_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """accuracy, macro-F1 over classes present in truth or prediction, per-class P/R/F1."""
    m = confusion(y_true, y_pred, n_classes)
    total = m.sum()
    tp = np.diag(m).astype(float)
    support, predicted = m.sum(1).astype(float), m.sum(0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
        "confusion": m.tolist(),
    }


def business_cost(true_action: list[str | None], pred_action: list[str]) -> dict[str, float | int]:
    """The notebook's cost: a false escalation costs 10, a false auto-resolve 5, averaged."""
    pairs = [(t, p) for t, p in zip(true_action, pred_action, strict=True) if t is not None]
    false_esc = sum(p == "escalate_to_human" and t != p for t, p in pairs)
    false_auto = sum(p == "auto_resolve" and t != p for t, p in pairs)
    cost = FALSE_ESCALATION_COST * false_esc + FALSE_AUTO_RESOLVE_COST * false_auto
    return {
        "business_cost": cost / len(pairs) if pairs else 0.0,
        "false_escalations": int(false_esc),
        "false_auto_resolves": int(false_auto),
    }
