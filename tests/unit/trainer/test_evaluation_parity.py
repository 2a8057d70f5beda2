"""The trainer's evaluation and the worker score a message identically.

Both are checked against a reference written out here by hand from the artifact's
contract (manifest.json): the ALL CAPS marker as its own token, truncation to
``max_length``, the padded forward pass, and softmax(logits / temperature) per head.
So the test fails if either side drops the temperature or the casing step, even if
both drop it together.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import evaluation
from trainer.data.records import Example
from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier

TEXTS = [
    "my card was declined twice today",
    "WHERE IS MY REFUND I ASKED A WEEK AGO",  # ALL CAPS: the marker changes the ids
    "hi",
    "the app crashes every time i open payments " * 12,  # longer than max_length
]
# Far from 1, and different per head, so a skipped or swapped temperature shows.
TEMPERATURES = {"intent": 2.5, "urgency": 0.4, "sentiment": 1.8, "action": 3.2}


@pytest.fixture(scope="module")
def artifact(smoke_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("parity") / "model"
    shutil.copytree(smoke_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["temperatures"] = TEMPERATURES
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def reference(artifact: Path) -> dict[str, np.ndarray]:
    """The contract, spelled out without the runtime's helpers."""
    loaded = load_artifact(artifact)
    m, tok = loaded.manifest, loaded.tokenizer
    assert m.casing_marker
    texts = [f"{m.casing_marker} {t}" if t.isupper() else t for t in TEXTS]
    enc = tok(texts, padding=True, truncation=True, max_length=m.max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = loaded.model(enc["input_ids"], enc["attention_mask"])
    return {
        h: torch.softmax(x.float() / m.temperatures[h], dim=-1).numpy() for h, x in logits.items()
    }


def test_the_trainer_evaluation_and_the_worker_give_the_same_probabilities(
    artifact: Path,
) -> None:
    expected = reference(artifact)
    loaded = load_artifact(artifact)
    examples = [Example(t, None, None, None, None) for t in TEXTS]
    trainer_side = evaluation.predict(evaluation.runtime(loaded), examples).probs
    worker = Classifier(load_artifact(artifact), device="cpu", dtype="float32")
    assert worker.packed is not None  # the worker's default, padding-free path
    worker_side = worker.predict(worker.tokenize(TEXTS).ids).probs
    for head, probs in expected.items():
        np.testing.assert_allclose(trainer_side[head], probs, atol=1e-5, err_msg=head)
        np.testing.assert_allclose(worker_side[head], probs, atol=1e-5, err_msg=head)
        np.testing.assert_allclose(trainer_side[head], worker_side[head], atol=1e-5)


def test_the_reference_is_sensitive_to_what_it_guards(artifact: Path) -> None:
    """Without temperatures, or without the marker, the probabilities differ visibly."""
    loaded = load_artifact(artifact)
    m, tok = loaded.manifest, loaded.tokenizer
    enc = tok(TEXTS, padding=True, truncation=True, max_length=m.max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = loaded.model(enc["input_ids"], enc["attention_mask"])
    unmarked = torch.softmax(logits["sentiment"].float() / m.temperatures["sentiment"], -1)
    raw = torch.softmax(logits["action"].float(), -1)
    expected = reference(artifact)
    assert np.abs(unmarked.numpy()[1] - expected["sentiment"][1]).max() > 1e-3
    assert np.abs(raw.numpy() - expected["action"]).max() > 1e-3
