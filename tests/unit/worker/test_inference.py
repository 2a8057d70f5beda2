"""The model adapter on a smoke artifact: batched == single, truncation, one call per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer import load_artifact
from worker.inference import Classifier

TEXTS = [
    "my card was declined!!",
    "WHERE IS MY REFUND",
    "hi",
    "how do i reset my pin please",
    "the app keeps crashing when i open payments and i am so annoyed",
]


@pytest.fixture(scope="module")
def classifier(smoke_artifact: Path) -> Classifier:
    return Classifier(load_artifact(smoke_artifact), device="cpu", dtype="float32")


def test_batched_predictions_equal_single_ones_within_1e_4(classifier: Classifier) -> None:
    ids, _ = classifier.token_ids(TEXTS)
    batched = classifier.predict(ids)
    for i, one in enumerate(ids):
        single = classifier.predict([one])
        for head in batched.probs:
            np.testing.assert_allclose(batched.probs[head][i], single.probs[head][0], atol=1e-4)
            assert batched.top[head][i] == single.top[head][0]
        assert batched.unfamiliarity is not None and single.unfamiliarity is not None
        np.testing.assert_allclose(batched.unfamiliarity[i], single.unfamiliarity[0], rtol=1e-4)


def test_one_forward_pass_per_batch(classifier: Classifier) -> None:
    ids, _ = classifier.token_ids(TEXTS)
    before = classifier.calls
    out = classifier.predict(ids)
    assert classifier.calls == before + 1
    for head, probs in out.probs.items():
        assert probs.shape == (len(TEXTS), len(out.labels[head]))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_long_texts_are_truncated_and_flagged(classifier: Classifier) -> None:
    m = classifier.max_length
    ids, truncated = classifier.token_ids(["word " * (m * 3), "short"])
    assert truncated == [True, False]
    assert len(ids[0]) == m and ids[0][-1] == classifier.sep_id


def test_rows_carry_labels_confidences_and_all_probabilities(classifier: Classifier) -> None:
    ids, _ = classifier.token_ids(TEXTS[:2])
    rows = classifier.predict(ids).rows()
    labels, confidences, predictions, unfamiliarity = rows[0]
    assert set(labels) == {"intent", "urgency", "sentiment", "action"}
    assert unfamiliarity is not None and unfamiliarity > 0
    assert predictions["action"]["confidence"] == confidences["action"]
    assert max(predictions["action"]["probabilities"].values()) == confidences["action"]
