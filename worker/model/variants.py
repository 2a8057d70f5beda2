"""The ways to run one artifact (variants), which of them this host can run, which the
artifact allows, and the accuracy rule that decides it.

A variant is a runtime and a precision: torch fp32 (padding-free), torch int8 (dynamic
quantization), torch bf16 (bf16 weights on a GPU, autocast over fp32 weights on a CPU),
ONNX Runtime fp32 / int8 (dynamic, or static calibrated on validation data) and
OpenVINO fp32 / bf16 / int8 static (NNCF), from the ONNX files and the OpenVINO IR that
the trainer exports beside the weights. The trainer scores each on the full noisy test
and records in the manifest whether it is *allowed* (``allowed``): no head loses more
than 0.5 points of accuracy against torch fp32, and intent macro-F1 loses at most 1
point. ``MODEL__VARIANT=auto`` times the allowed ones that run here and serves the
fastest (``autotune``).

``MODEL__VARIANT`` names one too, or a torch variant the trainer does not score:
torch-fp16 (as torch-bf16, at fp16), torch-bf16-weights (bf16 weights on a CPU too: what
torch-bf16 runs on a GPU) and each torch precision padded (``-padded``: batches padded
to their longest message instead of packed).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, get_args

from schemas.artifact import ModelVariant, ServedVariant, UnscoredVariant
from worker.model import devices
from worker.model.artifact import LoadedModel, sha256_file
from worker.model.errors import ArtifactError
from worker.model.runner import Runner

Variant = ModelVariant  # scored by the trainer, recorded in the manifest
VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)
# Every name the worker serves: the scored ones, then torch-fp16 and the padded ones.
SERVED: Final[tuple[ServedVariant, ...]] = (*VARIANTS, *get_args(UnscoredVariant))
BASELINE: Final[Variant] = "torch-fp32"
PADDED: Final = "-padded"
# A torch variant's precision: the weights' dtype on a GPU (bf16 and fp16 autocast over
# fp32 weights on a CPU; int8 quantizes fp32 weights; bf16-weights everywhere).
TORCH_DTYPES: Final = {
    "fp32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "int8": "float32",
    "bf16-weights": "bfloat16",
}
# Beside model.safetensors; the manifest's ``variants`` records each file's sha256.
RUNTIME_FILES: Final[dict[Variant, str]] = {
    "ort-fp32": "onnx/fp32.onnx",
    "ort-int8-dynamic": "onnx/int8-dynamic.onnx",
    "ort-int8-static": "onnx/int8-static.onnx",
    # OpenVINO compiles the fp32 ONNX file itself.
    "ov-fp32": "onnx/fp32.onnx",
    "ov-bf16": "onnx/fp32.onnx",  # compiled to bf16 (CPUs with bf16 instructions)
    # OpenVINO IR quantized by NNCF, OpenVINO's own quantizer: its int8 graph is what the
    # CPU plugin fuses into int8 kernels. ONNX Runtime's QDQ graph compiled by OpenVINO
    # ran at half its speed (docs/benchmarks.md, "Performance II").
    "ov-int8-static": "openvino/int8-static.xml",
}
RUNTIME_MODULES: Final = {"ort": "onnxruntime", "ov": "openvino", "torch": "torch"}
NO_BF16: Final = "this CPU has no bf16 instructions (avx512_bf16, amx_bf16)"
# The accuracy rule of a variant against the baseline, on the full noisy test.
MAX_HEAD_ACCURACY_DROP: Final = 0.005
MAX_INTENT_F1_DROP: Final = 0.01


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolved(device: str) -> str:
    """The device a setting names ("auto" resolved): "cpu", "cuda", ..."""
    return device if device != "auto" else devices.resolve(device)


def torch_variant(dtype: str, device: str, padded: bool = False) -> ServedVariant:
    """The torch variant at ``dtype`` (float32, bfloat16, float16, or "auto": what the
    device serves best, bf16 on a GPU that has it, else fp16, and fp32 on a CPU)."""
    if dtype == "auto":
        import torch

        from worker.model.classifier import resolve_dtype

        dtype = str(resolve_dtype("auto", torch.device(resolved(device)))).removeprefix("torch.")
    precision = next(p for p, d in TORCH_DTYPES.items() if d == dtype)
    name = f"torch-{precision}{PADDED if padded else ''}"
    if name not in SERVED:
        raise ValueError(f"no torch variant at dtype {dtype!r}")
    return name


def unavailable(variant: ServedVariant, loaded: LoadedModel, device: str) -> str | None:
    """Why ``variant`` cannot run on this host (None: it can)."""
    device = resolved(device)
    # bf16 weights (torch-bf16-weights, the GPU's path) run on any CPU, if slowly.
    bf16 = variant.removesuffix(PADDED) in {"torch-bf16", "ov-bf16"} and device == "cpu"
    if bf16 and not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        # Measured on an AVX2-only EPYC: torch's bf16 autocast 9x slower than fp32.
        return NO_BF16
    if variant in RUNTIME_FILES:
        if device != "cpu":
            return "the ONNX Runtime and OpenVINO variants run on the CPU here"
        if not (loaded.path / RUNTIME_FILES[variant]).exists():
            return f"the artifact has no {RUNTIME_FILES[variant]} (support-trainer variants)"
    elif variant.removesuffix(PADDED) == "torch-int8" and device != "cpu":
        return "dynamic int8 runs on the CPU"
    return missing_runtime(variant)


def missing_runtime(variant: ServedVariant) -> str | None:
    """Why the runtime ``variant``'s prefix names (ort-, ov-, torch-) cannot be imported
    (None: it can). torch is optional: without it the exported variants still serve."""
    module = RUNTIME_MODULES[variant.split("-", 1)[0]]
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{module} is not installed"
    return None


def build(
    variant: ServedVariant, loaded: LoadedModel, device: str, threads: int | None = None
) -> Runner:
    """A ``Model`` running ``loaded`` as ``variant`` (check ``unavailable`` first)."""
    device = resolved(device)
    if variant in RUNTIME_FILES:
        from worker.model.onnx_runtime import OnnxClassifier

        file = loaded.path / RUNTIME_FILES[variant]
        report = loaded.manifest.variants
        result = report.results.get(variant) if report is not None else None
        if result is not None and result.sha256 and file_sha256(file) != result.sha256:
            raise ArtifactError(
                f"{file}: sha256 differs from the manifest's variants.results.{variant}.sha256"
            )
        return OnnxClassifier(loaded, file, variant, threads)
    if not variant.startswith("torch-"):
        raise ValueError(f"no such variant: {variant!r}")
    from worker.model.classifier import Classifier

    padding_free = not variant.endswith(PADDED)
    precision = variant.removeprefix("torch-").removesuffix(PADDED)
    dtype = TORCH_DTYPES[precision]
    if precision == "int8":
        return Classifier(
            loaded, device, dtype, quantize="int8", padding_free=padding_free, threads=threads
        )
    if dtype != "float32" and device == "cpu" and precision != "bf16-weights":
        return Classifier(
            loaded, device, "float32", autocast=dtype, padding_free=padding_free, threads=threads
        )
    return Classifier(loaded, device, dtype, padding_free=padding_free, threads=threads)


def file_sha256(file: Path) -> str:
    """A variant file's sha256; an OpenVINO IR's covers its weights (.bin) too."""
    if file.suffix != ".xml":
        return sha256_file(file)
    h = hashlib.sha256()
    for part in (file, file.with_suffix(".bin")):
        h.update(bytes.fromhex(sha256_file(part)))
    return h.hexdigest()


def allowed(change: Mapping[str, float]) -> bool:
    """The accuracy rule, on a variant's change against the baseline (fractions: -0.01 is
    one point): per head ``<head>`` accuracy, and ``intent_macro_f1`` where it was
    measured. The trainer records it in the manifest and the bench judges by it."""
    heads = {k: v for k, v in change.items() if k != "intent_macro_f1"}
    return all(d >= -MAX_HEAD_ACCURACY_DROP for d in heads.values()) and (
        change.get("intent_macro_f1", 0.0) >= -MAX_INTENT_F1_DROP
    )
