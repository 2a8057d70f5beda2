"""The network: one shared encoder, one linear head per task, and the OOD scorer.

The trainer trains this module and the worker runs it; both build it from the same
code (nanoGPT's model.py, shared by train.py and sample.py, is the pattern).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel

from worker.model.errors import DeviceError


def with_attention(load: Any, *args: Any) -> Any:
    """SDPA attention where the architecture has it (BERT does; MPNet does not yet)."""
    try:
        return load(*args, attn_implementation="sdpa")
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc):
            raise
        # Named, not defaulted: a saved config may still say "sdpa".
        return load(*args, attn_implementation="eager")


def encoder_from_config(config: Mapping[str, Any]) -> Any:
    """An untrained encoder with the given transformers config (weights come after)."""
    body = dict(config)
    cfg = AutoConfig.for_model(body.pop("model_type"), **body)
    return with_attention(AutoModel.from_config, cfg)


class MahalanobisScorer(nn.Module):
    """How far a pooled embedding lies from the training data: an out-of-distribution score.

    The squared Mahalanobis distance to the nearest class mean under one shared
    covariance (Lee et al. 2018), divided by the hidden size so that a typical training
    message scores about 1. Classes are the fine-grained source intents where the data
    has them. Stored as buffers, so the scorer travels in model.safetensors and is
    covered by the artifact's weights hash.
    """

    whiten: Tensor
    means: Tensor

    def __init__(self, hidden: int, classes: int) -> None:
        super().__init__()
        self.register_buffer("whiten", torch.zeros(hidden, hidden))  # [H, H] = cov^-1/2
        self.register_buffer("means", torch.zeros(classes, hidden))  # [K, H], whitened

    def forward(self, pooled: Tensor) -> Tensor:
        """[B, H] -> [B], in float32 whatever the encoder runs in (no-op casts when the
        buffers are float32, as ``classifier.on_device`` keeps them)."""
        # Outside autocast too, which would run these matmuls in bf16.
        with torch.autocast(pooled.device.type, enabled=False):
            means = self.means.float()
            z = pooled.float() @ self.whiten.float()  # [B, H]
            sq = (z * z).sum(1, keepdim=True) - 2 * z @ means.T + (means**2).sum(1)  # [B, K]
            return sq.min(dim=1).values.clamp(min=0) / z.shape[1]

    @classmethod
    def fit(cls, pooled: Tensor, labels: Tensor, shrinkage: float = 1e-3) -> MahalanobisScorer:
        """Class means and the shared covariance of ``pooled`` [N, H] with ``labels`` [N]."""
        x = pooled.double()
        classes = torch.unique(labels)
        means = torch.stack([x[labels == c].mean(0) for c in classes])  # [K, H]
        centred = x - means[torch.searchsorted(classes, labels)]
        cov = centred.T @ centred / len(x)  # [H, H]
        # Shrink towards a scaled identity: the smallest eigenvalues are noise.
        cov = cov + shrinkage * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=x.dtype)
        values, vectors = torch.linalg.eigh(cov)
        whiten = vectors @ torch.diag(values.rsqrt()) @ vectors.T
        scorer = cls(x.shape[1], len(classes))
        scorer.whiten.copy_(whiten.float())
        scorer.means.copy_((means @ whiten).float())
        return scorer


class MultiHeadClassifier(nn.Module):
    """encoder -> pool (CLS or masked mean) -> dropout -> one Linear per head.

    ``ood`` scores the pooled embedding's distance from the training data; it is fitted
    after training and is absent while training.
    """

    def __init__(
        self,
        encoder: Any,
        heads: Mapping[str, Sequence[str]],
        pooling: str,
        dropout: float,
        ood_classes: int = 0,
    ) -> None:
        super().__init__()
        if pooling not in {"cls", "mean"}:
            raise ValueError(f"pooling must be cls or mean, got {pooling!r}")
        self.encoder: Any = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        hidden = int(encoder.config.hidden_size)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(hidden, len(labels)) for name, labels in heads.items()}
        )
        self.ood: Any = MahalanobisScorer(hidden, ood_classes) if ood_classes else None

    def pool(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """[B, T, H] -> [B, H]."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The pooled embedding [B, H] the heads and the OOD score read."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def classify(self, pooled: Tensor) -> dict[str, Tensor]:
        """Logits per head, each [B, C_head]."""
        pooled = self.dropout(pooled)
        return {name: head(pooled) for name, head in self.heads.items()}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
        """Logits per head, each [B, C_head]."""
        return self.classify(self.embed(input_ids, attention_mask))

    def outputs(
        self, input_ids: Tensor, attention_mask: Tensor
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """Logits per head and the OOD score [B] (None without a fitted scorer)."""
        pooled = self.embed(input_ids, attention_mask)
        return self.classify(pooled), (self.ood(pooled) if self.ood is not None else None)


def quantize_int8(model: torch.nn.Module, device: torch.device) -> Any:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations at run time).

    CPU only: these kernels use the VNNI/AVX-512 instructions of the CPU.
    """
    if device.type != "cpu":
        raise DeviceError(
            "int8 (model.variant=torch-int8) runs on the CPU; use torch-bf16 on a GPU"
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's API, still supported
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
