"""What every way of running an artifact shares: ``Runner``, the ``Model`` protocol
around a runtime's own ``prepare`` and ``forward``.

A runner (torch in ``classifier``, ONNX Runtime and OpenVINO in ``onnx_runtime``) says
only how a batch of token ids becomes its runtime's inputs (``prepare``) and how those
become the heads' logits side by side and the OOD scores, as numpy arrays on the host
(``forward``: the torch runner's one device-to-host copy a batch). Tokenizing, the
temperatures, the per-head softmax, ``predict_texts`` and the warm-up are here, once,
in numpy: no torch, so an install without it serves the exported variants.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

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

    @property
    @abstractmethod
    def precision(self) -> str:
        """What the bench and the startup log report: weights, autocast, layout."""

    @abstractmethod
    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """The forward pass's inputs for a batch of token ids."""

    @abstractmethod
    def forward(self, inputs: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """From ``prepare``'s inputs: the heads' logits side by side [B, sum C], in the
        order of ``heads``, and OOD scores [B] (None without a scorer), on the host."""

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        """Ids for each text in one tokenizer call, and whether it had to be truncated."""
        return tokenize(self.tokenizer, texts, self.max_length, self.marker)

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        """One forward pass over the batch; calibrated probabilities per head."""
        started = time.perf_counter()
        joined, ood = self.forward(self.prepare(batch_ids))
        probs = self.calibrated(joined)
        top = {head: p.argmax(axis=1) for head, p in probs.items()}
        elapsed_ms = (time.perf_counter() - started) * 1000
        return BatchOutput(self.heads, probs, top, elapsed_ms, ood)

    def calibrated(self, joined: np.ndarray) -> dict[str, np.ndarray]:
        """Per head, the softmax of its logits over its temperature: [B, C] each, from
        the heads' logits side by side [B, sum C] (float32 in, float32 out)."""
        scaled = joined.astype(np.float32, copy=False) / self._temps  # [B, sum C]
        probs, col = {}, 0
        for head, width in zip(self.heads, self._splits, strict=True):
            part = scaled[:, col : col + width]  # [B, C]
            e = np.exp(part - part.max(axis=1, keepdims=True))
            probs[head] = e / e.sum(axis=1, keepdims=True)
            col += width
        return probs

    def predict_texts(self, texts: Sequence[str], batch_size: int = 256) -> BatchOutput:
        """protocol.predict_texts: in batches of similar length, in the order given."""
        return predict_texts(self, texts, batch_size)

    def warmup(self, batch_size: int = 8) -> None:
        """Allocate and compile what the first real batch would otherwise wait for."""
        self.predict(self.tokenize([WARMUP_TEXT] * batch_size).ids)
