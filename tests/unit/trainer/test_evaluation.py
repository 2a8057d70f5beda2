"""Evaluation arithmetic on hand-made predictions: routed outcomes, risk-coverage, AUROC."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.records import Example
from trainer.evaluation import Predictions, ood_auroc, risk_coverage, routed
from worker.routing import RoutingPolicy

AUTO, INFO = [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]


def _case() -> tuple[list[Example], Predictions]:
    # four say auto_resolve confidently; two of them are wrong, and those two are the
    # least familiar; one says request_more_info
    truth = [
        "auto_resolve",
        "auto_resolve",
        "escalate_to_human",
        "request_more_info",
        "request_more_info",
    ]
    examples = [Example(f"t{i}", "general_question", "low", "calm", a) for i, a in enumerate(truth)]
    action = np.array([AUTO, AUTO, AUTO, AUTO, INFO])
    other = np.tile([0.8, 0.1, 0.1], (5, 1))
    probs = {
        "intent": np.tile([0.1, 0.1, 0.1, 0.1, 0.6], (5, 1)),
        "urgency": other,
        "sentiment": other,
        "action": action,
    }
    return examples, Predictions(probs, np.array([0.5, 1.0, 4.0, 3.0, 0.2]))


def test_routed_counts_what_the_policy_lets_through() -> None:
    examples, pred = _case()
    open_door = routed(examples, pred, RoutingPolicy(0.7))
    assert open_door["auto_resolved"] == pytest.approx(0.8)
    assert open_door["false_auto_resolves"] == 2
    gated = routed(examples, pred, RoutingPolicy(0.7, max_unfamiliarity=2.0))
    assert gated["false_auto_resolves"] == 0 and gated["auto_resolved"] == pytest.approx(0.4)
    assert gated["reasons"] == {"model": pytest.approx(0.6), "unfamiliar": pytest.approx(0.4)}


def test_risk_coverage_admits_the_most_familiar_first() -> None:
    examples, pred = _case()
    curve = risk_coverage(examples, pred, min_confidence=0.7)
    # sorted by unfamiliarity: 0.2 (says more_info), 0.5 ok, 1.0 ok, 3.0 wrong, 4.0 wrong
    assert curve["ood_coverage"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert curve["ood_risk"] == pytest.approx([0.0, 0.0, 0.0, 0.2, 0.4])
    assert curve["confidence_coverage"][-1] == pytest.approx(0.8)
    assert curve["confidence_risk"][-1] == pytest.approx(0.4)


def test_auroc_is_one_when_separated_and_a_half_when_mixed() -> None:
    assert ood_auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 1.0
    assert ood_auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 0.0
    assert ood_auroc(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 3.5])) == pytest.approx(0.5)
