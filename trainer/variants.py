"""Every variant of an artifact, exported and scored: the ONNX files beside the weights
and, in the manifest, each variant's accuracy on the full noisy test and whether the
accuracy rule allows it (worker.model.variants).

- ONNX fp32: the network as trained, padded inputs with dynamic batch and length axes,
  logits per head and the OOD score as outputs.
- ONNX int8 dynamic: the encoder's MatMuls with per-channel int8 weights, activations
  quantized at run time; the OOD scorer and the heads stay fp32.
- ONNX int8 static: the encoder's MatMuls in int8, weights per channel and activations
  at ranges calibrated on validation messages (QDQ format, 99.99th percentile). Kept in
  fp32: everything but MatMuls (LayerNorm, softmax, GELU, the additive attention mask),
  the word-embedding gather, the OOD scorer and the heads (the last layers decide the
  labels).
- OpenVINO int8 static (IR): NNCF, OpenVINO's quantizer, on the fp32 graph, with the
  same calibration messages (its transformer preset: symmetric per-channel weights,
  activations at their observed ranges, and a fast bias correction). Kept in fp32: the
  OOD scorer and the heads; NNCF's transformer rules also keep the softmax, LayerNorm and
  GELU out of int8.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schemas.artifact import MANIFEST_FILE
from trainer import scoring
from trainer.data.records import Example
from trainer.evaluation import label_ids
from worker.model.artifact import LoadedModel, load_artifact
from worker.model.onnx_runtime import INPUTS, OOD_OUTPUT
from worker.model.protocol import predict_texts
from worker.model.text import pad, tokenize
from worker.model.variants import (
    NO_BF16,
    RUNTIME_FILES,
    VARIANTS,
    Variant,
    allowed,
    build,
    file_sha256,
)
from worker.model.variants import unavailable as why_not

OPSET = 18
CALIBRATION_MESSAGES = 512


class _Exported(torch.nn.Module):
    """The network with positional inputs and a flat tuple of outputs, for the exporter."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.model = loaded.model
        self.heads = list(loaded.manifest.heads)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[Any, ...]:
        logits, ood = self.model.outputs(input_ids, attention_mask)
        return (*(logits[h] for h in self.heads), *(() if ood is None else (ood,)))


def export_fp32(loaded: LoadedModel, file: Path) -> None:
    model = _Exported(loaded).eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    outputs = [*model.heads, *([OOD_OUTPUT] if loaded.model.ood is not None else [])]
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    axes.update({name: {0: "batch"} for name in outputs})
    file.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            model,
            (ids, mask),
            str(file),
            input_names=list(INPUTS),
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: dynamic axes without guards
        )


def _keep_fp32(file: Path) -> list[str]:
    """Nodes that stay fp32 under static quantization: the word-embedding gather, the OOD
    scorer (its whitening matrix holds tiny and huge values) and the heads' GEMMs."""
    import onnx

    graph = onnx.load(str(file), load_external_data=False).graph
    keep = []
    for node in graph.node:
        name = node.name
        inputs = " ".join(node.input)
        if (
            ("embeddings" in inputs and node.op_type == "Gather")
            or "ood" in inputs
            or "heads." in inputs
        ):
            keep.append(name)
    return keep


def quantize_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_dynamic

    ort_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=_keep_fp32(src),  # the OOD scorer and the heads stay fp32
    )


class _Calibration:
    """onnxruntime's CalibrationDataReader over padded batches of validation messages."""

    def __init__(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self._it: Iterator[tuple[np.ndarray, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        nxt = next(self._it, None)
        return None if nxt is None else {INPUTS[0]: nxt[0], INPUTS[1]: nxt[1]}


def _token_ids(loaded: LoadedModel, texts: Sequence[str]) -> list[list[int]]:
    """The worker's token ids for ``texts`` (casing marker, truncation), without a model."""
    m = loaded.manifest
    return tokenize(loaded.tokenizer, list(texts), m.max_length, m.casing_marker).ids


def calibration_batches(
    loaded: LoadedModel, texts: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Whole batches of 32 messages, padded to the longest message of the set (ONNX
    Runtime's percentile calibrator stacks every batch's activations: one shape for all)."""
    ids = _token_ids(loaded, texts)
    pad_id = int(loaded.tokenizer.pad_token_id)
    width = max(len(x) for x in ids)
    padded = [[*x, *([pad_id] * (width - len(x)))] for x in ids]
    batches = []
    for s in range(0, len(ids) - 31, 32):
        batch, _ = pad(padded[s : s + 32], pad_id)
        mask = (batch != pad_id).astype(np.int64)
        batches.append((batch, mask))
    return batches


def quantize_static(src: Path, dst: Path, loaded: LoadedModel, texts: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_static

    batches = calibration_batches(loaded, texts)
    ort_static(
        str(src),
        str(dst),
        _Calibration(batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=_keep_fp32(src),
        # MatMuls only (the GEMMs are nearly all the work): the attention mask's additive
        # -inf and the LayerNorms stay out of int8, where they would lose the most.
        op_types_to_quantize=["MatMul"],
        extra_options={"ActivationSymmetric": True, "CalibPercentile": 99.99},
    )


def export_files(
    out: Path, calibration_texts: Sequence[str], log: Any = print
) -> dict[Variant, Path]:
    """Writes the files of ``RUNTIME_FILES`` into the artifact ``out``: three ONNX
    files and one OpenVINO IR."""
    out = out.resolve()  # the quantizers run in a scratch working directory
    loaded = load_artifact(out)
    files = {v: out / f for v, f in RUNTIME_FILES.items()}
    started = time.monotonic()
    export_fp32(loaded, files["ort-fp32"])
    log(f"exported ONNX fp32 ({time.monotonic() - started:.0f}s)")
    # onnxruntime's quantizers write scratch files into the working directory.
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        quantize_dynamic(files["ort-fp32"], files["ort-int8-dynamic"])
        log(f"quantized it to int8, dynamic ({time.monotonic() - started:.0f}s)")
        quantize_static(files["ort-fp32"], files["ort-int8-static"], loaded, calibration_texts)
        log(
            f"quantized it to int8, static, calibrated on {len(calibration_texts)} validation "
            f"messages ({time.monotonic() - started:.0f}s)"
        )
    quantize_openvino(files["ort-fp32"], files["ov-int8-static"], loaded, calibration_texts)
    log(f"quantized it to int8 for OpenVINO with NNCF ({time.monotonic() - started:.0f}s)")
    return files


def quantize_openvino(src: Path, dst: Path, loaded: LoadedModel, texts: Sequence[str]) -> None:
    """NNCF's static int8 of the fp32 ONNX graph, saved as OpenVINO IR (``dst``: .xml)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(src))
    keep = [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "MatMul" and not op.get_friendly_name().startswith("/encoder/")
    ]  # the OOD scorer's and the heads' GEMMs
    batches = calibration_batches(loaded, texts)
    quantized = nncf.quantize(
        model,
        nncf.Dataset([{INPUTS[0]: ids, INPUTS[1]: mask} for ids, mask in batches]),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(names=keep, validate=False),
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(dst))


def score(model: Any, examples: Sequence[Example]) -> dict[str, float]:
    """Per head accuracy, and intent macro-F1, of ``model`` on ``examples`` (the
    evaluation's own metrics: rows without a label are left out)."""
    out = predict_texts(model, [ex.text for ex in examples])
    result: dict[str, float] = {}
    for head, labels in model.heads.items():
        metrics = scoring.head_metrics(label_ids(examples, head), out.top[head], len(labels))
        result[head] = metrics["accuracy"]
        if head == "intent":
            result["intent_macro_f1"] = metrics["macro_f1"]
    return result


def score_variants(
    out: Path, test: Sequence[Example], split: str = "test_noisy", log: Any = print
) -> dict[str, Any]:
    """Every variant that runs here, scored on ``test``; the manifest's ``variants``."""
    loaded = load_artifact(out)
    report: dict[str, Any] = {}
    base: dict[str, float] | None = None
    for variant in VARIANTS:
        reason = why_not(variant, loaded, "cpu")
        entry: dict[str, Any] = {}
        if variant in RUNTIME_FILES and (out / RUNTIME_FILES[variant]).exists():
            entry["file"] = RUNTIME_FILES[variant]
            entry["sha256"] = file_sha256(out / RUNTIME_FILES[variant])
        if reason is not None and reason != NO_BF16:
            entry.update(scored=False, allowed=False, why=reason)
            report[variant] = entry
            continue
        # bf16 is scored even where this CPU lacks it (emulated, slowly): accuracy does not
        # depend on speed, and the artifact may serve on a CPU that has it.
        started = time.monotonic()
        acc = score(build(variant, loaded, "cpu"), test)
        base = base or acc
        change = {k: acc[k] - base[k] for k in acc}
        entry.update(
            scored=True,
            accuracy=acc,
            change=change,
            allowed=allowed(change),
        )
        report[variant] = entry
        log(
            f"scored {variant} on {len(test)} noisy test messages: "
            + " ".join(f"{k}={v:.4f}" for k, v in acc.items())
            + f" ({'allowed' if entry['allowed'] else 'not allowed'}, "
            f"{time.monotonic() - started:.0f}s)"
        )
    lengths = [len(x) for x in _token_ids(loaded, [ex.text for ex in test])]
    sample = [lengths[i] for i in np.random.default_rng(0).permutation(len(lengths))[:256]]
    return {"test": split, "scored_on": len(test), "token_lengths": sample, "results": report}


def record(out: Path, report: dict[str, Any] | None) -> None:
    """Writes ``report`` into the artifact's manifest as ``variants`` (None: removes it)."""
    file = out / MANIFEST_FILE
    manifest = json.loads(file.read_text())
    if report is None:
        manifest.pop("variants", None)
    else:
        manifest["variants"] = report
    file.write_text(json.dumps(manifest, indent=2) + "\n")


def make(out: Path, data: dict[str, list[Example]], log: Any = print) -> dict[str, Any]:
    """Export, score on the noisy test (the validation split if there is none), record."""
    split = "test_noisy" if data.get("test_noisy") else "val"
    calibration = [ex.text for ex in data["val"][:CALIBRATION_MESSAGES]]
    record(out, None)  # an earlier report describes the files about to be replaced
    export_files(out, calibration, log)
    report = score_variants(out, data[split], split, log)
    record(out, report)
    return report


def table(report: dict[str, Any]) -> str:
    """The variants as a markdown table: accuracy per head, change, allowed."""
    heads = ["intent", "urgency", "sentiment", "action", "intent_macro_f1"]
    lines = [
        f"variants scored on {report['scored_on']} {report['test']} messages "
        "(change against torch-fp32, points)",
        "",
        "| variant | " + " | ".join(heads) + " | allowed |",
        "|---|" + "---|" * (len(heads) + 1),
    ]
    for name, r in report["results"].items():
        if not r["scored"]:
            lines.append(f"| {name} | " + " | ".join("-" for _ in heads) + f" | no: {r['why']} |")
            continue
        cells = [f"{r['accuracy'][h]:.4f} ({100 * r['change'][h]:+.2f})" for h in heads]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if r['allowed'] else 'no'} |")
    return "\n".join(lines)
