"""The worker's classifier on a smoke artifact: batched == single, truncation, one forward
pass per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier

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
    ids, _ = classifier.tokenize(TEXTS)
    batched = classifier.predict(ids)
    for i, one in enumerate(ids):
        single = classifier.predict([one])
        for head in batched.probs:
            np.testing.assert_allclose(batched.probs[head][i], single.probs[head][0], atol=1e-4)
            assert batched.top[head][i] == single.top[head][0]
        assert batched.unfamiliarity is not None and single.unfamiliarity is not None
        np.testing.assert_allclose(batched.unfamiliarity[i], single.unfamiliarity[0], rtol=1e-4)


@pytest.mark.parametrize("padding_free", [True, False])
def test_one_forward_pass_per_batch(smoke_artifact: Path, padding_free: bool) -> None:
    classifier = Classifier(
        load_artifact(smoke_artifact), "cpu", "float32", padding_free=padding_free
    )
    assert (classifier.packed is not None) == padding_free
    # Both paths embed tokens through the artifact's own embedding table, once per pass.
    embeddings = classifier.model.encoder.embeddings.word_embeddings
    calls: list[int] = []
    hook = embeddings.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    try:
        ids, _ = classifier.tokenize(TEXTS)
        out = classifier.predict(ids)
    finally:
        hook.remove()
    tokens = sum(len(x) for x in ids)
    # One call, over every real token (packed: [T]) or the padded batch ([B, L]).
    assert calls == ([tokens] if padding_free else [len(TEXTS)])
    for head, probs in out.probs.items():
        assert probs.shape == (len(TEXTS), len(out.labels[head]))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_long_texts_are_truncated_and_flagged(classifier: Classifier) -> None:
    m = classifier.max_length
    ids, truncated = classifier.tokenize(["word " * (m * 3), "short"])
    assert truncated == [True, False]
    assert len(ids[0]) == m and ids[0][-1] == classifier.tokenizer.sep_token_id


def test_predictions_carry_labels_confidences_and_all_probabilities(classifier: Classifier) -> None:
    ids, _ = classifier.tokenize(TEXTS[:2])
    rows = classifier.predict(ids).predictions()
    labels, confidences, predictions, unfamiliarity = rows[0]
    assert set(labels) == {"intent", "urgency", "sentiment", "action"}
    assert unfamiliarity is not None and unfamiliarity > 0
    assert predictions["action"]["confidence"] == confidences["action"]
    assert max(predictions["action"]["probabilities"].values()) == confidences["action"]
