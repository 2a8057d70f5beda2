"""What every way of running an artifact shares: ``Runner``, the ``Model`` protocol
around a runtime's own ``prepare`` and ``forward``.

A runner (torch in ``classifier``, ONNX Runtime and OpenVINO in ``onnx_runtime``) says
only how a batch of token ids becomes its runtime's inputs (``prepare``) and how those
become the heads' logits side by side and the OOD scores (``forward``). Tokenizing,
the temperatures, the per-head softmax, ``predict_texts`` and the warm-up are here,
once: the probabilities stay on the runtime's own arrays (torch tensors on the device,
one device-to-host copy a batch; numpy arrays on the host), so each runner's outputs
are what its runtime computes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from worker.model.artifact import LoadedModel
from worker.model.protocol import BatchOutput, predict_texts
from worker.model.text import Tokenized, tokenize

WARMUP_TEXT = "warm up the model before the first message"


class Runner(ABC):
    """The ``Model`` protocol over one runtime: subclasses define ``prepare``,
    ``forward``, and the ``device``, ``dtype`` and ``precision`` they run at."""

    device: Any
    dtype: Any

    def __init__(self, loaded: LoadedModel) -> None:
        m = self.manifest = loaded.manifest
        self.tokenizer = loaded.tokenizer
        self.heads = {h: tuple(labels) for h, labels in m.heads.items()}
        self.max_length = m.max_length
        self.marker = m.casing_marker
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.model_info = loaded.model_info
        self._splits = [len(labels) for labels in self.heads.values()]
        self._temps = np.asarray(loaded.column_temperatures(), dtype=np.float32)  # [sum C]
        self._device_temps: torch.Tensor | None = None

    @property
    @abstractmethod
    def precision(self) -> str:
        """What the bench and the startup log report: weights, autocast, layout."""

    @abstractmethod
    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """The forward pass's inputs for a batch of token ids."""

    @abstractmethod
    def forward(self, inputs: Any) -> tuple[Any, Any]:
        """From ``prepare``'s inputs: the heads' logits side by side [B, sum C], in the
        order of ``heads``, and OOD scores [B] (None without a scorer); torch tensors or
        numpy arrays. Called under ``torch.inference_mode``."""

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        """Ids for each text in one tokenizer call, and whether it had to be truncated."""
        return tokenize(self.tokenizer, texts, self.max_length, self.marker)

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        """One forward pass over the batch; calibrated probabilities per head."""
        started = time.perf_counter()
        with torch.inference_mode():
            joined, ood = self.forward(self.prepare(batch_ids))
            if isinstance(joined, np.ndarray):
                probs, unfamiliarity = self._softmax_host(joined, ood)
            else:
                probs, unfamiliarity = self._softmax_device(joined, ood)
        top = {head: p.argmax(axis=1) for head, p in probs.items()}
        elapsed_ms = (time.perf_counter() - started) * 1000
        return BatchOutput(self.heads, probs, top, elapsed_ms, unfamiliarity)

    def _softmax_host(
        self, joined: np.ndarray, ood: np.ndarray | None
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Temperatures and a softmax per head, in numpy."""
        scaled = joined / self._temps
        probs, col = {}, 0
        for head, width in zip(self.heads, self._splits, strict=True):
            part = scaled[:, col : col + width]
            e = np.exp(part - part.max(axis=1, keepdims=True))
            probs[head] = e / e.sum(axis=1, keepdims=True)
            col += width
        return probs, ood

    def _softmax_device(
        self, joined: torch.Tensor, ood: torch.Tensor | None
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Temperatures and a softmax per head on the tensors' device, then the batch's
        one device-to-host copy (the OOD scores ride along as one more column)."""
        if self._device_temps is None or self._device_temps.device != joined.device:
            self._device_temps = torch.from_numpy(self._temps).to(joined.device)
        scaled = joined.float() / self._device_temps
        probs = torch.cat(
            [torch.softmax(part, dim=1) for part in scaled.split(self._splits, dim=1)], dim=1
        )  # [B, sum C]
        if ood is not None:
            probs = torch.cat([probs, ood.float()[:, None]], dim=1)  # [B, sum C + 1]
        host = probs.cpu().numpy()
        out, col = {}, 0
        for head, width in zip(self.heads, self._splits, strict=True):
            out[head] = host[:, col : col + width]
            col += width
        return out, (host[:, col] if ood is not None else None)

    def predict_texts(self, texts: Sequence[str], batch_size: int = 256) -> BatchOutput:
        """protocol.predict_texts: in batches of similar length, in the order given."""
        return predict_texts(self, texts, batch_size)

    def warmup(self, batch_size: int = 8) -> None:
        """Allocate and compile what the first real batch would otherwise wait for."""
        self.predict(self.tokenize([WARMUP_TEXT] * batch_size).ids)
