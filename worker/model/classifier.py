"""The model as the worker runs it in torch: token ids for texts, one forward pass per batch.

Everything per batch happens on whole tensors: pack (or pad) once, one forward under
inference_mode, one device-to-host copy of the logits and OOD scores, then
(``runner.Runner``) temperatures and softmax for all heads on the host.
The trainer's evaluation runs this same class, so the figures in an artifact's
metrics.json come from the code path the worker serves with.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from worker.model import devices
from worker.model.artifact import LoadedModel
from worker.model.errors import DeviceError
from worker.model.network import MultiHeadClassifier, quantize_int8
from worker.model.packed import PackedClassifier, pack, supports
from worker.model.runner import Runner
from worker.model.text import pad

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``devices.resolve``, as torch's device."""
    return torch.device(devices.resolve(device))


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"bf16 weights (model.variant=torch-bf16), but {torch.cuda.get_device_name()} "
            "has no bf16; use torch-fp16"
        )
    return DTYPES[dtype]


def on_device(
    model: MultiHeadClassifier, device: torch.device, dtype: torch.dtype
) -> MultiHeadClassifier:
    """``model`` on ``device`` in ``dtype``, the OOD scorer in float32: a copy unless it is
    already there, so the artifact's model stays as loaded for every other variant.

    The scorer's distance is a difference of squares of whitened embeddings (values in
    the hundreds); bf16's 8 bits of mantissa would turn it into noise.
    """
    first = next(model.parameters())
    if first.device != device or first.dtype != dtype:
        model = copy.deepcopy(model).to(device, dtype=dtype)
        if model.ood is not None:
            model.ood.float()
    return model.eval()


def enable_tf32(device: torch.device) -> None:
    """fp32 matmuls on tensor cores (TF32) on CUDA, as TEI and vLLM serve; the heads'
    logits lose nothing that calibration's temperatures would notice."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


class Classifier(Runner):
    """The torch runner: packed (padding-free) where the encoder allows, else padded."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str = "auto",
        dtype: str = "auto",
        quantize: str = "none",
        padding_free: bool = True,
        autocast: str = "none",
        threads: int | None = None,
    ) -> None:
        super().__init__(loaded)
        if threads:  # torch's CPU pool is the process's: model.threads sets it
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        enable_tf32(self.device)
        self.model = on_device(loaded.model, self.device, self.dtype)
        # Built before quantization, which swaps its (fused) Linear layers for int8 ones.
        self.packed = (
            PackedClassifier(self.model).eval() if padding_free and supports(self.model) else None
        )
        if quantize == "int8":
            self.model = quantize_int8(self.model, self.device)
            if self.packed is not None:
                self.packed = quantize_int8(self.packed, self.device)
        self.autocast = None if autocast == "none" else DTYPES[autocast]
        self.quantize = quantize

    @property
    def precision(self) -> str:
        """Weights, autocast, packing."""
        name = "int8" if self.quantize == "int8" else str(self.dtype).removeprefix("torch.")
        if self.autocast is not None:
            name += "+autocast-" + str(self.autocast).removeprefix("torch.")
        return name + (", padding-free" if self.packed is not None else ", padded")

    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """The forward pass's inputs on the device: packed when it can be, else padded."""
        if self.packed is not None:
            return pack(batch_ids, self.device)
        ids, mask = pad(batch_ids, self.pad_id)
        both = torch.from_numpy(np.stack([ids, mask]))  # [2, B, L]: one host-to-device copy
        if self.device.type == "cuda":
            both = both.pin_memory().to(self.device, non_blocking=True)
        return both[0], both[1]

    def forward(self, inputs: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """The heads' logits side by side [B, sum C] and OOD scores [B] (or None), brought
        to the host in one copy, in float32."""
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type,
                dtype=self.autocast or torch.bfloat16,
                enabled=bool(self.autocast),
            ),
        ):
            if self.packed is not None:
                logits, ood = self.packed.outputs(inputs)
            else:
                logits, ood = self.model.outputs(*inputs)
            joined = torch.cat([logits[h] for h in self.heads], dim=1).float()  # [B, sum C]
            if ood is not None:  # one more column, float32: bf16 would blur the distances
                joined = torch.cat([joined, ood.float()[:, None]], dim=1)  # [B, sum C + 1]
            host = joined.cpu().numpy()
        width = sum(self._splits)
        return host[:, :width], (host[:, width] if ood is not None else None)
