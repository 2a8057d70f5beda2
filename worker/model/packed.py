"""Padding-free forward pass: the batch's real tokens only, still one pass per batch.

On short support messages padding is up to half of a padded batch (the bench reports
it), and on a CPU every padded token costs as much as a real one in the linear layers,
which are nearly all of the work. Here the batch is packed into one [T, H] matrix of
its T real tokens: embeddings, Q/K/V (one fused GEMM), attention output, feed-forward
and LayerNorms run on real tokens only. Attention alone needs per-sequence structure;
it gets it by scattering Q/K/V into a padded [B, L] view for one SDPA call with a key
mask and gathering the real rows back. Attention is a few percent of the FLOPs at
these lengths, so its padding is cheap; this is the unpad/pad scheme of FlashAttention's
bert_padding, with SDPA where a GPU would use varlen attention on cu_seqlens.

The packed module copies nothing but Q/K/V (fused), so it shares weights with the
artifact's model and gives the same logits to float rounding (tests hold it to that).
BERT-family (bert) and DistilBERT encoders are supported; ``supports`` says so, and the
classifier falls back to the padded path for anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import Tensor, nn

from worker.model.network import MultiHeadClassifier

SUPPORTED = frozenset({"bert", "distilbert"})


def supports(model: MultiHeadClassifier) -> bool:
    return str(getattr(model.encoder.config, "model_type", "")) in SUPPORTED


@dataclass(frozen=True)
class PackedBatch:
    """Index tensors describing B sequences of T real tokens, built once on the host."""

    ids: Tensor  # [T] token ids, sequences back to back
    positions: Tensor  # [T] position of each token within its sequence
    seq: Tensor  # [T] which sequence each token belongs to
    slots: Tensor  # [T] row-major index of each token in a padded [B, L] grid
    key_mask: Tensor  # [B, L] True where a real token is (attention may look there)
    lengths: Tensor  # [B]
    starts: Tensor  # [B] index in [T] of each sequence's first token

    @property
    def size(self) -> int:
        return int(self.lengths.shape[0])


# The int64 index vectors of a PackedBatch, in the order of its flat staging buffer.
_FLAT = ("ids", "positions", "seq", "slots", "lengths", "starts")


def pack(batch_ids: Sequence[Sequence[int]], device: torch.device | None = None) -> PackedBatch:
    """Host-side index arithmetic in numpy (no per-token Python), into one int64 buffer;
    on a GPU that buffer is pinned and copied once, and the views are cut on the device."""
    lengths = np.fromiter((len(x) for x in batch_ids), dtype=np.int64, count=len(batch_ids))
    if lengths.size == 0 or int(lengths.min()) < 1:
        raise ValueError("every sequence needs at least one token")
    rows, total, width = len(lengths), int(lengths.sum()), int(lengths.max())
    flat = np.empty(4 * total + 2 * rows, dtype=np.int64)
    ids, positions, seq, slots = (flat[i * total : (i + 1) * total] for i in range(4))
    flat[4 * total : 4 * total + rows] = lengths
    starts = flat[4 * total + rows :]
    starts[0] = 0
    np.cumsum(lengths[:-1], out=starts[1:])
    seq[:] = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    positions[:] = np.arange(total, dtype=np.int64) - starts[seq]
    ids[:] = np.fromiter((t for x in batch_ids for t in x), dtype=np.int64, count=total)
    slots[:] = seq * width + positions
    staging = torch.from_numpy(flat)
    if device is not None and device.type == "cuda":
        staging = staging.pin_memory().to(device, non_blocking=True)
    views = staging.split([total] * 4 + [rows] * 2)
    parts = dict(zip(_FLAT, views, strict=True))
    key_mask = torch.arange(width, device=staging.device)[None, :] < parts["lengths"][:, None]
    return PackedBatch(key_mask=key_mask, **parts)


class _Layer(nn.Module):
    """One post-LayerNorm transformer block on packed tokens (BERT and DistilBERT alike)."""

    def __init__(
        self,
        q: nn.Linear,
        k: nn.Linear,
        v: nn.Linear,
        attn_out: nn.Module,
        ln1: nn.Module,
        ffn_in: nn.Module,
        act: Any,
        ffn_out: nn.Module,
        ln2: nn.Module,
        heads: int,
    ) -> None:
        super().__init__()
        hidden = q.in_features
        # One [3H, H] GEMM instead of three: fewer, larger matmuls (and one int8 kernel).
        self.qkv = nn.Linear(hidden, 3 * hidden, device=q.weight.device, dtype=q.weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
            self.qkv.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
        self.attn_out, self.ln1 = attn_out, ln1
        self.ffn_in, self.act, self.ffn_out, self.ln2 = ffn_in, act, ffn_out, ln2
        self.heads = heads

    def forward(self, x: Tensor, b: PackedBatch, bias: Tensor | None) -> Tensor:
        hidden = x.shape[1]
        rows, width = b.key_mask.shape
        head_dim = hidden // self.heads
        qkv = self.qkv(x)  # [T, 3H]
        grid = qkv.new_zeros(rows * width, 3 * hidden)
        grid[b.slots] = qkv
        q, k, v = grid.view(rows, width, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        if bias is None:
            mask = b.key_mask[:, None, None, :]  # [B, 1, 1, L]: no query looks at padding
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, nh, L, hd]
        else:
            # On a CPU, SDPA's flash kernel was the second-largest operator in the
            # profile on these short rows; two batched matmuls and a softmax are cheaper.
            scores = torch.matmul(q, k.transpose(-1, -2)) * head_dim**-0.5 + bias
            att = torch.matmul(torch.softmax(scores, dim=-1).to(v.dtype), v)
        att = att.transpose(1, 2).reshape(rows * width, hidden)[b.slots]  # [T, H]
        x = self.ln1(self.attn_out(att) + x)
        return self.ln2(self.ffn_out(self.act(self.ffn_in(x))) + x)  # type: ignore[no-any-return]


class PackedClassifier(nn.Module):
    """The artifact's model, run on packed tokens; returns logits per head, each [B, C]."""

    def __init__(self, model: MultiHeadClassifier) -> None:
        super().__init__()
        if not supports(model):
            raise ValueError(f"no padding-free path for {model.encoder.config.model_type!r}")
        enc, cfg = model.encoder, model.encoder.config
        emb = enc.embeddings
        self.word, self.position, self.emb_norm = (
            emb.word_embeddings,
            emb.position_embeddings,
            emb.LayerNorm,
        )
        layers: list[_Layer] = []
        if cfg.model_type == "bert":
            # Token type 0 everywhere, as the padded path passes no token_type_ids.
            self.register_buffer("type_row", emb.token_type_embeddings.weight[0].detach().clone())
            for layer in enc.encoder.layer:
                att = layer.attention
                layers.append(
                    _Layer(
                        att.self.query,
                        att.self.key,
                        att.self.value,
                        att.output.dense,
                        att.output.LayerNorm,
                        layer.intermediate.dense,
                        layer.intermediate.intermediate_act_fn,
                        layer.output.dense,
                        layer.output.LayerNorm,
                        int(cfg.num_attention_heads),
                    )
                )
        else:  # distilbert: no token types
            self.register_buffer("type_row", None)
            for layer in enc.transformer.layer:
                att = layer.attention
                layers.append(
                    _Layer(
                        att.q_lin,
                        att.k_lin,
                        att.v_lin,
                        att.out_lin,
                        layer.sa_layer_norm,
                        layer.ffn.lin1,
                        layer.ffn.activation,
                        layer.ffn.lin2,
                        layer.output_layer_norm,
                        int(cfg.n_heads),
                    )
                )
        self.layers = nn.ModuleList(layers)
        self.pooling = model.pooling
        self.heads = model.heads
        self.ood = model.ood

    def forward(self, b: PackedBatch) -> dict[str, Tensor]:
        return self._classify(self.embed(b))

    def outputs(self, b: PackedBatch) -> tuple[dict[str, Tensor], Tensor | None]:
        """Logits per head and the OOD score [B] (None without a scorer), as the model's."""
        pooled = self.embed(b)
        return self._classify(pooled), (self.ood(pooled) if self.ood is not None else None)

    def _classify(self, pooled: Tensor) -> dict[str, Tensor]:
        return {name: head(pooled) for name, head in self.heads.items()}

    def embed(self, b: PackedBatch) -> Tensor:
        """The pooled embedding [B, H]."""
        x = self.word(b.ids) + self.position(b.positions)
        if self.type_row is not None:
            x = x + self.type_row
        x = self.emb_norm(x)
        bias = None
        if x.device.type == "cpu":  # an additive key mask, once per batch: -inf at padding
            bias = torch.zeros(b.key_mask.shape, dtype=torch.float32, device=x.device)
            bias = bias.masked_fill(~b.key_mask, float("-inf"))[:, None, None, :]
        for layer in self.layers:
            x = layer(x, b, bias)
        if self.pooling == "cls":
            pooled = x[b.starts]
        else:
            sums = x.new_zeros(b.size, x.shape[1]).index_add_(0, b.seq, x)
            pooled = sums / b.lengths[:, None].to(x.dtype)
        return pooled  # type: ignore[no-any-return]
