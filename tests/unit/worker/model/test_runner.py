"""One base for every runner: tokenize, temperatures, the per-head softmax, predict_texts
and the warm-up live in ``Runner``; torch, ONNX Runtime and OpenVINO say only how to
prepare a batch and run it forward."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier
from worker.model.onnx_runtime import OnnxClassifier
from worker.model.runner import Runner

SHARED = {"tokenize", "predict", "predict_texts", "warmup", "_softmax_host", "_softmax_device"}
RUNNERS = [Classifier, OnnxClassifier]


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda c: c.__name__)
def test_each_runner_defines_only_its_prepare_and_forward(runner: type[Runner]) -> None:
    assert issubclass(runner, Runner)
    own = {name for name in vars(runner) if not name.startswith("__")} - {"_abc_impl"}
    assert {"prepare", "forward"} <= own
    assert not own & SHARED, f"{runner.__name__} overrides {sorted(own & SHARED)}"
    assert own <= {"prepare", "forward", "precision"}


class Fixed(Runner):
    """Fixed logits for each row, as numpy arrays on the host or torch tensors."""

    def __init__(self, loaded: Any, logits: np.ndarray, ood: np.ndarray, as_torch: bool) -> None:
        super().__init__(loaded)
        self.logits, self.ood, self.as_torch = logits, ood, as_torch
        self.device, self.dtype = "cpu", "float32"

    @property
    def precision(self) -> str:
        return "fixed"

    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> list[int]:
        return [ids[0] for ids in batch_ids]

    def forward(self, rows: list[int]) -> tuple[Any, Any]:
        joined, ood = self.logits[rows], self.ood[rows]
        if self.as_torch:
            return torch.from_numpy(joined), torch.from_numpy(ood)
        return joined, ood


def test_the_host_and_device_softmax_agree_and_apply_the_temperatures(
    smoke_artifact: Path,
) -> None:
    loaded = load_artifact(smoke_artifact)
    width = sum(len(labels) for labels in loaded.manifest.heads.values())
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(5, width)).astype(np.float32)
    ood = rng.uniform(0, 10, size=5).astype(np.float32)
    host = Fixed(loaded, logits, ood, as_torch=False).predict([[i] for i in range(5)])
    device = Fixed(loaded, logits, ood, as_torch=True).predict([[i] for i in range(5)])
    temps = np.asarray(loaded.column_temperatures(), dtype=np.float64)
    col = 0
    for head, labels in loaded.manifest.heads.items():
        part = logits[:, col : col + len(labels)] / temps[col : col + len(labels)]
        want = np.exp(part - part.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_allclose(host.probs[head], want, atol=1e-6)
        np.testing.assert_allclose(device.probs[head], want, atol=1e-6)
        np.testing.assert_array_equal(host.top[head], want.argmax(1))
        np.testing.assert_array_equal(device.top[head], want.argmax(1))
        col += len(labels)
    assert host.unfamiliarity is not None and device.unfamiliarity is not None
    np.testing.assert_array_equal(host.unfamiliarity, ood)
    np.testing.assert_array_equal(device.unfamiliarity, ood)
