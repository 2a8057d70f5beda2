"""One base for every runner: tokenize, temperatures, the per-head softmax, predict_texts
and the warm-up live in ``Runner``, in numpy; torch, ONNX Runtime and OpenVINO say only
how to prepare a batch and run it forward to the host."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from worker.model.artifact import LoadedModel, load_artifact
from worker.model.classifier import Classifier
from worker.model.onnx_runtime import OnnxClassifier
from worker.model.runner import Runner

SHARED = {"tokenize", "predict", "calibrated", "predict_texts", "warmup"}
RUNNERS = [Classifier, OnnxClassifier]
TEXTS = [
    "my card was declined!!",
    "WHERE IS MY REFUND",
    "hi",
    "the app keeps crashing when i open payments and i am so annoyed",
]


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda c: c.__name__)
def test_each_runner_defines_only_its_prepare_and_forward(runner: type[Runner]) -> None:
    assert issubclass(runner, Runner)
    own = {name for name in vars(runner) if not name.startswith("__")} - {"_abc_impl"}
    assert {"prepare", "forward"} <= own
    assert not own & SHARED, f"{runner.__name__} overrides {sorted(own & SHARED)}"
    assert own <= {"prepare", "forward", "precision"}


class Fixed(Runner):
    """Fixed logits for each row, as a runtime's forward leaves them on the host."""

    def __init__(self, loaded: Any, logits: np.ndarray, ood: np.ndarray) -> None:
        super().__init__(loaded)
        self.logits, self.ood = logits, ood
        self.device, self.dtype = "cpu", "float32"

    @property
    def precision(self) -> str:
        return "fixed"

    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> list[int]:
        return [ids[0] for ids in batch_ids]

    def forward(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
        return self.logits[rows], self.ood[rows]


def torch_calibrated(joined: torch.Tensor, loaded: LoadedModel) -> dict[str, np.ndarray]:
    """The post-processing the runners ran in torch before it moved to numpy: temperatures
    and a softmax per head on the tensors, then to the host."""
    temps = torch.tensor(loaded.column_temperatures(), dtype=torch.float32)
    scaled = joined.float() / temps
    splits = [len(labels) for labels in loaded.manifest.heads.values()]
    parts = [torch.softmax(part, dim=1).numpy() for part in scaled.split(splits, dim=1)]
    return dict(zip(loaded.manifest.heads, parts, strict=True))


def test_the_softmax_applies_each_heads_temperature(smoke_artifact: Path) -> None:
    loaded = load_artifact(smoke_artifact)
    width = sum(len(labels) for labels in loaded.manifest.heads.values())
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(5, width)).astype(np.float32)
    ood = rng.uniform(0, 10, size=5).astype(np.float32)
    out = Fixed(loaded, logits, ood).predict([[i] for i in range(5)])
    temps = np.asarray(loaded.column_temperatures(), dtype=np.float64)
    assert len(set(loaded.manifest.temperatures.values())) > 1  # the heads' own, not one
    col = 0
    for head, labels in loaded.manifest.heads.items():
        part = logits[:, col : col + len(labels)] / temps[col : col + len(labels)]
        want = np.exp(part - part.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_allclose(out.probs[head], want, atol=1e-6)
        np.testing.assert_array_equal(out.top[head], want.argmax(1))
        assert out.probs[head].dtype == np.float32
        col += len(labels)
    assert out.unfamiliarity is not None
    np.testing.assert_array_equal(out.unfamiliarity, ood)
    in_torch = torch_calibrated(torch.from_numpy(logits), loaded)
    for head in loaded.manifest.heads:
        np.testing.assert_allclose(out.probs[head], in_torch[head], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding_free", [True, False])
def test_numpy_post_processing_equals_the_torch_path_on_the_artifacts_logits(
    smoke_artifact: Path, padding_free: bool
) -> None:
    """The torch runner's predict (its logits to the host, calibrated in numpy) against
    the network's own outputs calibrated in torch, as the runner did before."""
    loaded = load_artifact(smoke_artifact)
    classifier = Classifier(loaded, "cpu", "float32", padding_free=padding_free)
    ids = classifier.tokenize(TEXTS).ids
    inputs = classifier.prepare(ids)
    with torch.inference_mode():
        if classifier.packed is not None:
            logits, ood = classifier.packed.outputs(inputs)
        else:
            logits, ood = classifier.model.outputs(*inputs)
    joined = torch.cat([logits[h] for h in classifier.heads], dim=1)
    want = torch_calibrated(joined, loaded)
    got = classifier.predict(ids)
    for head in classifier.heads:
        np.testing.assert_allclose(got.probs[head], want[head], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.top[head], want[head].argmax(1))
    assert ood is not None and got.unfamiliarity is not None
    np.testing.assert_allclose(got.unfamiliarity, ood.float().numpy(), rtol=1e-5)
