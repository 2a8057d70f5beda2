"""Which variants may run, which can run here, and which autotune serves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.model import autotune, variants
from worker.model.artifact import load_artifact
from worker.model.protocol import BatchOutput


def test_the_accuracy_rule() -> None:
    """The one rule: the trainer's manifest (heads and intent macro-F1) and the bench's
    (heads only, where macro-F1 is not measured) judge by it alike."""
    ok = {"intent": -0.004, "urgency": 0.01, "sentiment": 0.0, "action": -0.005}
    assert variants.allowed({**ok, "intent_macro_f1": -0.01})
    assert not variants.allowed({**ok, "action": -0.0051, "intent_macro_f1": 0.0})
    assert not variants.allowed({**ok, "intent_macro_f1": -0.0101})
    assert variants.allowed(ok)  # the bench's: per head only
    assert not variants.allowed({**ok, "intent": -0.006})


def test_each_torch_variant_builds_its_precision_and_layout(smoke_artifact: Path) -> None:
    loaded = load_artifact(smoke_artifact)
    precision = {
        "torch-fp32": "float32, padding-free",
        "torch-fp32-padded": "float32, padded",
        "torch-int8": "int8, padding-free",
        "torch-int8-padded": "int8, padded",
        "torch-bf16": "float32+autocast-bfloat16, padding-free",  # autocast on a CPU
        "torch-bf16-padded": "float32+autocast-bfloat16, padded",
        "torch-fp16": "float32+autocast-float16, padding-free",
        "torch-fp16-padded": "float32+autocast-float16, padded",
        "torch-bf16-weights": "bfloat16, padding-free",  # the GPU's bf16, on a CPU too
    }
    assert set(precision) == {v for v in variants.SERVED if v.startswith("torch-")}
    for name, want in precision.items():
        assert variants.build(name, loaded, "cpu").precision == want, name  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no such variant"):
        variants.build("null", loaded, "cpu")  # type: ignore[arg-type]


def test_torch_variant_names_the_variant_of_a_dtype_and_layout() -> None:
    assert variants.torch_variant("float32", "cpu") == "torch-fp32"
    assert variants.torch_variant("bfloat16", "cpu", padded=True) == "torch-bf16-padded"
    assert variants.torch_variant("float16", "cuda") == "torch-fp16"
    assert variants.torch_variant("auto", "cpu", padded=True) == "torch-fp32-padded"


def test_bf16_on_a_cpu_without_bf16_instructions_is_not_a_candidate(
    monkeypatch: pytest.MonkeyPatch, smoke_artifact: Path
) -> None:
    loaded = load_artifact(smoke_artifact)
    monkeypatch.setattr(variants, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert "bf16" in (variants.unavailable("torch-bf16", loaded, "cpu") or "")
    monkeypatch.setattr(variants, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert variants.unavailable("torch-bf16", loaded, "cpu") is None
    monkeypatch.setattr(variants, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert variants.unavailable("torch-bf16-padded", loaded, "cpu") == variants.NO_BF16
    assert variants.unavailable("torch-bf16-weights", loaded, "cpu") is None  # slow, runs
    assert "onnx/fp32.onnx" in (variants.unavailable("ort-fp32", loaded, "cpu") or "")
    assert variants.unavailable("torch-int8", loaded, "cuda") is not None
    assert variants.unavailable("torch-int8-padded", loaded, "cuda") is not None


class Fake:
    """A model that takes ``ms`` per batch."""

    def __init__(self, ms: float) -> None:
        self.ms = ms
        self.heads = {"intent": ("a", "b")}

    def predict(self, batch_ids: list[list[int]]) -> BatchOutput:
        time.sleep(self.ms / 1000)
        p = {"intent": np.full((len(batch_ids), 2), 0.5)}
        return BatchOutput(self.heads, p, {"intent": p["intent"].argmax(1)}, self.ms)


def test_autotune_serves_the_fastest_allowed_variant_that_runs_here(
    monkeypatch: pytest.MonkeyPatch, variants_artifact: Path
) -> None:
    loaded = load_artifact(variants_artifact)
    report = loaded.manifest.variants
    assert report is not None
    results = dict(report.results)
    # Make the fastest one not allowed: autotune must pass it over for the next fastest.
    results["ort-int8-static"] = results["ort-int8-static"].model_copy(update={"allowed": False})
    results["torch-int8"] = results["torch-int8"].model_copy(update={"allowed": True})
    manifest = loaded.manifest.model_copy(
        update={"variants": report.model_copy(update={"results": results})}
    )
    loaded.manifest = manifest
    speed = {
        "torch-fp32": 20,
        "torch-int8": 8,
        "ort-fp32": 12,
        "ort-int8-dynamic": 5,
        "ort-int8-static": 1,
        "torch-bf16": 2,
        "ov-fp32": 9,
        "ov-bf16": 7,
        "ov-int8-static": 6,
    }
    built: list[str] = []

    def fake_build(name: str, *args: Any) -> Fake:
        built.append(name)
        return Fake(speed[name])

    monkeypatch.setattr(autotune, "build", fake_build)
    monkeypatch.setattr(variants, "cpu_flags", lambda: frozenset({"avx2"}))
    choice = autotune.autotune(loaded, "cpu", batch_size=16, seconds_each=0.05)
    assert choice.variant == "ort-int8-dynamic"
    assert "ort-int8-static" not in built  # not allowed: never built, never timed
    assert "not allowed" in choice.skipped["ort-int8-static"]
    assert "bf16" in choice.skipped.get("torch-bf16", "bf16")
    assert set(choice.msgs_per_s) == set(built)
    assert max(choice.msgs_per_s, key=choice.msgs_per_s.__getitem__) == "ort-int8-dynamic"
    assert list(choice.contenders) == ["ort-int8-dynamic"]  # no live trial asked for
    # For the live trial: the fastest first, then those within CONTENDER_SHARE of its speed
    # (ov-int8-static, 6 ms against 5), never a slow one (torch-int8, 8 ms) or one that is
    # not allowed (ort-int8-static, 1 ms).
    live = autotune.autotune(loaded, "cpu", batch_size=16, seconds_each=0.05, keep_contenders=True)
    assert list(live.contenders)[:2] == ["ort-int8-dynamic", "ov-int8-static"]
    assert "torch-int8" not in live.contenders and "ort-int8-static" not in live.contenders


def test_without_a_variant_report_autotune_serves_the_baseline(smoke_artifact: Path) -> None:
    loaded = load_artifact(smoke_artifact)
    assert loaded.manifest.variants is None
    names, skipped = autotune.candidates(loaded, "cpu")
    assert names == ["torch-fp32"]
    assert "no variant report" in skipped["*"]


def test_traffic_batches_take_their_lengths_from_the_sample() -> None:
    batch = autotune.traffic_batch([7, 12, 30], batch_size=64, vocab=30522)
    assert len(batch) == 64
    assert {len(x) for x in batch} <= {7, 12, 30}
    assert len({len(x) for x in batch}) == 3


class ShapeLog(Fake):
    def __init__(self) -> None:
        super().__init__(1)
        self.shapes: list[tuple[int, ...]] = []

    def predict(self, batch_ids: list[list[int]]) -> BatchOutput:
        self.shapes.append(tuple(len(x) for x in batch_ids))
        return super().predict(batch_ids)


def test_settle_runs_openvino_on_distinct_traffic_batches_and_nothing_else(
    variants_artifact: Path,
) -> None:
    """OpenVINO prepares kernels per shape: settle shows it many shapes before serving."""
    loaded = load_artifact(variants_artifact)
    ov, torch_ = ShapeLog(), ShapeLog()
    assert autotune.settle(ov, "ov-int8-static", loaded, 32, seconds=0.2) == len(ov.shapes) > 3
    assert len(set(ov.shapes)) == len(ov.shapes)  # a new batch each time
    assert all(len(s) == 32 for s in ov.shapes)
    assert autotune.settle(torch_, "torch-int8", loaded, 32, seconds=0.2) == 0
    assert torch_.shapes == []


def test_a_variant_that_fails_here_is_skipped_and_a_changed_file_refuses_the_artifact(
    monkeypatch: pytest.MonkeyPatch, variants_artifact: Path
) -> None:
    from worker.model.errors import ArtifactError

    loaded = load_artifact(variants_artifact)
    speed = {"torch-fp32": 20, "ort-int8-dynamic": 2, "ov-int8-static": 5}
    failing = {"ort-int8-dynamic": RuntimeError("compile failed on this CPU")}

    def fake_build(name: str, *args: Any) -> Fake:
        if name in failing:
            raise failing[name]
        return Fake(speed.get(name, 30))

    monkeypatch.setattr(autotune, "build", fake_build)
    choice = autotune.autotune(loaded, "cpu", batch_size=8, seconds_each=0.02)
    assert choice.variant == "ov-int8-static"  # the fastest of those that ran
    assert choice.skipped["ort-int8-dynamic"].startswith("failed here: RuntimeError")
    assert "ort-int8-dynamic" not in choice.msgs_per_s
    failing["ov-int8-static"] = ArtifactError("sha256 differs")
    with pytest.raises(ArtifactError, match="sha256"):
        autotune.autotune(loaded, "cpu", batch_size=8, seconds_each=0.02)


def test_device_auto_is_resolved_before_a_variant_is_judged_or_built(smoke_artifact: Path) -> None:
    """ "auto" on a CPU host is the CPU: torch-bf16 there is autocast over fp32 weights."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU host")
    loaded = load_artifact(smoke_artifact)
    model = variants.build("torch-bf16", loaded, "auto")
    assert model.precision.startswith("float32+autocast-bfloat16")
    assert variants.unavailable("torch-int8", loaded, "auto") is None
