"""What the pipeline, the bench and the trainer's evaluation see of a model: the
``Model`` protocol, a batch's output, one message's prediction, and the null model.

numpy only, no torch: the worker's pure modules (intake, inference, outgoing) type
against this, and the null model measures everything around a real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from worker.model.text import Tokenized


class Prediction(NamedTuple):
    """One message's predictions, as the routing policy and the outbound record use them."""

    labels: dict[str, str]
    confidences: dict[str, float]
    predictions: dict[str, Any]  # the outbound ``predictions`` block
    unfamiliarity: float | None  # the OOD score; None when the model has none


@dataclass(frozen=True)
class BatchOutput:
    """Calibrated probabilities [B, C] and argmax [B] per head, and OOD scores [B], on the
    host."""

    labels: Mapping[str, tuple[str, ...]]
    probs: dict[str, np.ndarray]
    top: dict[str, np.ndarray]
    inference_ms: float
    unfamiliarity: np.ndarray | None = None  # [B]

    def __len__(self) -> int:
        return len(next(iter(self.top.values())))

    def predictions(self) -> list[Prediction]:
        """Per message, in batch order: labels, confidences, the predictions block, OOD.

        Arrays become Python lists once per batch; the per-message work is dict building.
        """
        per_head = {h: (self.probs[h].tolist(), self.top[h].tolist()) for h in self.probs}
        size = len(self)
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
            out.append(Prediction(labels, confidences, predictions, scores[n]))
        return out


class Model(Protocol):
    """What the pipeline, the bench and the trainer's evaluation need from a model."""

    @property
    def heads(self) -> Mapping[str, tuple[str, ...]]: ...

    @property
    def model_info(self) -> Mapping[str, str]:
        """name, version, content_hash: stamped on every result."""
        ...

    @property
    def precision(self) -> str:
        """What the startup log and the bench report: weights, autocast, packing."""
        ...

    @property
    def device(self) -> object: ...

    @property
    def dtype(self) -> object: ...

    def tokenize(self, texts: Sequence[str]) -> Tokenized: ...

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput: ...

    def warmup(self, batch_size: int = 8) -> None: ...


class NullClassifier:
    """Fixed predictions, no torch: measures everything around the model (bench F)."""

    def __init__(self, heads: Mapping[str, tuple[str, ...]], max_length: int = 128) -> None:
        self.heads = heads
        self.max_length = max_length
        self.model_info = {"name": "null", "version": "0", "content_hash": "0" * 64}
        self.device, self.dtype, self.precision = "none", "none", "none"

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        ids = [[1] * min(self.max_length, len(t.split()) + 2) for t in texts]
        return Tokenized(ids, [len(t.split()) + 2 > self.max_length for t in texts])

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        probs = {
            h: np.tile(np.eye(len(ls))[-1], (len(batch_ids), 1)) for h, ls in self.heads.items()
        }
        return BatchOutput(self.heads, probs, {h: p.argmax(1) for h, p in probs.items()}, 0.0)

    def warmup(self, batch_size: int = 8) -> None:
        pass


def predict_texts(model: Model, texts: Sequence[str], batch_size: int = 256) -> BatchOutput:
    """Every text through the model's ``tokenize`` and ``predict``, in batches of similar
    length, returned in the order given (the trainer's evaluation scores with this)."""
    if not texts:
        empty = {h: np.zeros((0, len(ls)), dtype=np.float32) for h, ls in model.heads.items()}
        return BatchOutput(model.heads, empty, {h: p.argmax(1) for h, p in empty.items()}, 0.0)
    ids = model.tokenize(texts).ids
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    parts = [
        model.predict([ids[i] for i in order[s : s + batch_size]])
        for s in range(0, len(order), batch_size)
    ]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    probs = {h: np.concatenate([p.probs[h] for p in parts])[inverse] for h in model.heads}
    scores = (
        np.concatenate([p.unfamiliarity for p in parts])[inverse]
        if parts[0].unfamiliarity is not None
        else None
    )
    top = {h: p.argmax(axis=1) for h, p in probs.items()}
    return BatchOutput(model.heads, probs, top, sum(p.inference_ms for p in parts), scores)
