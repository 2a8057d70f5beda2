"""The worker's classifier on a smoke artifact: batched == single, truncation, one forward
pass per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier
from worker.model.errors import DeviceError
from worker.model.network import quantize_int8

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


# How far each dtype's calibrated probabilities may lie from float32's on the smoke model:
# bf16 keeps 8 bits of mantissa, fp16 11; the OOD score runs in float32 in both.
TOLERANCE = {"bfloat16": 0.06, "float16": 0.01}


@pytest.mark.parametrize("padding_free", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precisions_run_and_stay_near_float32(
    smoke_artifact: Path, dtype: str, padding_free: bool
) -> None:
    loaded = load_artifact(smoke_artifact)
    reference = Classifier(loaded, "cpu", "float32", padding_free=padding_free)
    half = Classifier(loaded, "cpu", dtype, padding_free=padding_free)
    assert (half.packed is not None) == padding_free
    assert half.model.ood.whiten.dtype == torch.float32  # the scorer stays float32
    ids, _ = reference.tokenize(TEXTS)
    want, got = reference.predict(ids), half.predict(ids)
    for head in want.probs:
        np.testing.assert_allclose(got.probs[head], want.probs[head], atol=TOLERANCE[dtype])
    assert want.unfamiliarity is not None and got.unfamiliarity is not None
    np.testing.assert_allclose(got.unfamiliarity, want.unfamiliarity, rtol=0.1)


def test_building_a_half_precision_classifier_leaves_the_loaded_model_as_it_was(
    smoke_artifact: Path,
) -> None:
    loaded = load_artifact(smoke_artifact)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    ids, _ = Classifier(loaded, "cpu", "float32").tokenize(TEXTS)
    first = Classifier(loaded, "cpu", "float32").predict(ids)
    Classifier(loaded, "cpu", "bfloat16").predict(ids)
    after = loaded.model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    # A float32 variant built after the bf16 one computes on the float32 weights.
    again = Classifier(loaded, "cpu", "float32").predict(ids)
    for head in first.probs:
        np.testing.assert_array_equal(again.probs[head], first.probs[head])


def test_a_setting_the_device_cannot_honour_is_a_device_error(smoke_artifact: Path) -> None:
    loaded = load_artifact(smoke_artifact)
    with pytest.raises(DeviceError, match=r"model\.variant=torch-int8"):
        quantize_int8(loaded.model, torch.device("meta"))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"model\.device=cuda"):
            Classifier(loaded, "cuda", "float32")
