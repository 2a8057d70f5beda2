"""The model adapter: token ids for texts, and one forward pass per batch.

Everything per batch happens on whole tensors: pad once, one forward under
inference_mode, temperatures and softmax for all heads, then one device-to-host copy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from trainer.artifact import LoadedModel
from trainer.modeling import mark_casing, quantize_int8
from worker.packed import PackedClassifier, pack, supports, to_device

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Row(NamedTuple):
    """One message's predictions, as the routing policy and the outbound record use them."""

    labels: dict[str, str]
    confidences: dict[str, float]
    predictions: dict[str, Any]  # the outbound ``predictions`` block
    unfamiliarity: float | None  # the OOD score; None when the model has none


@dataclass(frozen=True)
class BatchOutput:
    """Calibrated probabilities [B, C] and argmax [B] per head, and OOD scores [B], on the
    host."""

    labels: dict[str, tuple[str, ...]]
    probs: dict[str, np.ndarray]
    top: dict[str, np.ndarray]
    inference_ms: float
    unfamiliarity: np.ndarray | None = None  # [B]

    def rows(self) -> list[Row]:
        """Per message: labels, confidences, the outbound predictions block, OOD score.

        Arrays become Python lists once per batch; the per-message work is dict building.
        """
        per_head = {h: (self.probs[h].tolist(), self.top[h].tolist()) for h in self.probs}
        size = len(next(iter(self.top.values())))
        scores = self.unfamiliarity.tolist() if self.unfamiliarity is not None else [None] * size
        out = []
        for n in range(size):
            labels, confidences, predictions = {}, {}, {}
            for head, (probs, top) in per_head.items():
                names, k, row = self.labels[head], top[n], probs[n]
                labels[head], confidences[head] = names[k], row[k]
                predictions[head] = {
                    "label": names[k],
                    "confidence": row[k],
                    "probabilities": dict(zip(names, row, strict=True)),
                }
            out.append(Row(labels, confidences, predictions, scores[n]))
        return out


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but torch sees no CUDA device")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return DTYPES[dtype]


class NullClassifier:
    """Fixed predictions, no torch: measures everything around the model (bench F)."""

    def __init__(self, heads: dict[str, tuple[str, ...]], max_length: int = 128) -> None:
        self.heads = heads
        self.max_length = max_length
        self.model_info = {"name": "null", "version": "0", "content_hash": "0" * 64}
        self.calls = 0
        self.device, self.dtype, self.precision = "none", "none", "none"

    def token_ids(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        ids = [[1] * min(self.max_length, len(t.split()) + 2) for t in texts]
        return ids, [len(t.split()) + 2 > self.max_length for t in texts]

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        self.calls += 1
        probs = {
            h: np.tile(np.eye(len(ls))[-1], (len(batch_ids), 1)) for h, ls in self.heads.items()
        }
        return BatchOutput(self.heads, probs, {h: p.argmax(1) for h, p in probs.items()}, 0.0)

    def warmup(self, batch_size: int = 8) -> None:
        pass


class Classifier:
    """Runs a loaded artifact; ``calls`` counts forward passes (one per batch)."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str = "auto",
        dtype: str = "auto",
        quantize: str = "none",
        padding_free: bool = True,
        autocast: str = "none",
    ) -> None:
        m = loaded.manifest
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = loaded.model.to(self.device, dtype=self.dtype).eval()
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
        self.tokenizer = loaded.tokenizer
        self.heads = {h: tuple(labels) for h, labels in m.heads.items()}
        self.max_length = m.max_length
        self.marker = m.casing_marker
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.sep_id = int(self.tokenizer.sep_token_id)
        self.model_info = {
            "name": m.name,
            "version": m.version,
            "content_hash": loaded.content_hash,
        }
        widths = [len(labels) for labels in self.heads.values()]
        self._splits = widths
        # One temperature per output column, so calibration is a single division.
        self._temps = torch.tensor(
            [m.temperatures[h] for h, w in zip(self.heads, widths, strict=True) for _ in range(w)],
            device=self.device,
        )  # [sum C]
        self.calls = 0

    def token_ids(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Ids for each text in one tokenizer call, and whether it had to be truncated."""
        marked = [mark_casing(t, self.marker) for t in texts]
        # One token past max_length tells "truncated" from "exactly fits" without a
        # second, untruncated tokenization of a possibly huge text.
        ids: list[list[int]] = self.tokenizer(
            marked, truncation=True, max_length=self.max_length + 1, add_special_tokens=True
        )["input_ids"]
        truncated = [len(x) > self.max_length for x in ids]
        cut = [
            [*x[: self.max_length - 1], self.sep_id] if t else x
            for x, t in zip(ids, truncated, strict=True)
        ]
        return cut, truncated

    @property
    def precision(self) -> str:
        """What the bench and the startup log report: weights, autocast, packing."""
        name = "int8" if self.quantize == "int8" else str(self.dtype).removeprefix("torch.")
        if self.autocast is not None:
            name += "+autocast-" + str(self.autocast).removeprefix("torch.")
        return name + (", padding-free" if self.packed is not None else ", padded")

    def padded(self, batch_ids: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """Ids and attention mask [B, T], padded to the batch's longest member."""
        width = max(len(x) for x in batch_ids)
        ids = np.full((len(batch_ids), width), self.pad_id, dtype=np.int64)  # [B, T]
        mask = np.zeros((len(batch_ids), width), dtype=np.int64)
        for row, x in enumerate(batch_ids):
            ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        return self._to_device(ids), self._to_device(mask)

    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """The forward pass's inputs on the device: packed when it can be, else padded."""
        if self.packed is not None:
            return to_device(pack(batch_ids), self.device)
        return self.padded(batch_ids)

    def forward(self, inputs: Any) -> tuple[dict[str, Any], Any]:
        """Logits per head and OOD scores [B] (or None) from ``prepare``'s inputs; the caller
        holds inference_mode."""
        with torch.autocast(
            self.device.type, dtype=self.autocast or torch.bfloat16, enabled=bool(self.autocast)
        ):
            if self.packed is not None:
                return self.packed.outputs(inputs)
            return self.model.outputs(*inputs)

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        """One forward pass over the batch: its real tokens only, or padded to its longest."""
        started = time.perf_counter()
        self.calls += 1
        with torch.inference_mode():
            logits, ood = self.forward(self.prepare(batch_ids))
            joined = torch.cat([logits[h] for h in self.heads], dim=1).float() / self._temps
            probs = torch.cat(
                [torch.softmax(part, dim=1) for part in joined.split(self._splits, dim=1)], dim=1
            )  # [B, sum C]
            if ood is not None:  # one more column, so the copy stays one copy
                probs = torch.cat([probs, ood.float()[:, None]], dim=1)  # [B, sum C + 1]
            host = probs.cpu().numpy()  # the batch's one device-to-host copy
        out_probs, out_top, col = {}, {}, 0
        for head, width_h in zip(self.heads, self._splits, strict=True):
            out_probs[head] = host[:, col : col + width_h]
            out_top[head] = out_probs[head].argmax(axis=1)
            col += width_h
        unfamiliarity = host[:, col] if ood is not None else None
        elapsed_ms = (time.perf_counter() - started) * 1000
        return BatchOutput(self.heads, out_probs, out_top, elapsed_ms, unfamiliarity)

    def _to_device(self, array: np.ndarray) -> Any:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def warmup(self, batch_size: int = 8) -> None:
        """Allocate and compile what the first real batch would otherwise wait for."""
        ids, _ = self.token_ids(["warm up the model before the first message"] * batch_size)
        self.predict(ids)
        self.calls = 0
