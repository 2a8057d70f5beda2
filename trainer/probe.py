"""Compare sentence encoders before fine-tuning one: a frozen linear probe and throughput.

For each encoder: embed the train and test parts of each collection once (frozen, the
encoder's own pooling), fit a logistic-regression intent probe on each collection's
train part, and score it on every collection's test part. The off-diagonal cells are
the encoder's transfer between collections with nothing fine-tuned, so they measure
what the pretrained semantics bring; the throughput is the same encoder's forward
pass over the test texts, batched, on this machine. A cheap first cut: an encoder
that wins here still has to win the fine-tuned transfer table (docs/model.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from schemas.labels import INTENTS
from trainer.data.records import Example
from trainer.modeling import load_backbone
from trainer.scoring import head_metrics

BATCH = 128
MAX_LENGTH = 64


@dataclass(frozen=True)
class EncoderReport:
    name: str
    source: str
    layers: int
    hidden: int
    parameters: int
    msgs_per_s: float
    transfer: dict[tuple[str, str], float]  # (train collection, test collection) -> intent F1


@torch.inference_mode()
def embed(backbone: Any, texts: Sequence[str]) -> tuple[torch.Tensor, float]:
    """L2-normalised masked-mean embeddings [N, H] and the seconds the forward passes took."""
    encoder = backbone.encoder.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), int(encoder.config.hidden_size))
    seconds = 0.0
    for start in range(0, len(order), BATCH):
        index = order[start : start + BATCH]
        batch = backbone.tokenizer(
            [texts[i] for i in index],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        started = time.perf_counter()
        hidden = encoder(**batch).last_hidden_state  # [B, T, H]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        seconds += time.perf_counter() - started
        out[torch.tensor(index)] = F.normalize(pooled.float(), dim=-1)
    return out, seconds


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-4) -> tuple[torch.Tensor, ...]:
    """Multinomial logistic regression by L-BFGS: weights [H, C] and bias [C]."""
    w = torch.zeros(x.shape[1], len(INTENTS), requires_grad=True)
    b = torch.zeros(len(INTENTS), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")
    scale = 20.0  # unit-norm inputs: logits need room

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(scale * x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return scale * w.detach(), b.detach()


def compare(name: str, data: dict[str, list[Example]]) -> EncoderReport:
    """Probe one encoder on every (train collection, test collection) pair."""
    backbone = load_backbone(name)
    collections = sorted({ex.collection for ex in data["test_noisy"]})

    def part(split: str, collection: str) -> tuple[list[str], torch.Tensor]:
        rows = [ex for ex in data[split] if ex.collection == collection]
        return [ex.text for ex in rows], torch.tensor(
            [INTENTS.index(str(ex.intent)) for ex in rows]
        )

    tests, seconds, n = {}, 0.0, 0
    for c in collections:
        texts, y = part("test_noisy", c)
        x, took = embed(backbone, texts)
        tests[c], seconds, n = (x, y), seconds + took, n + len(texts)
    transfer = {}
    for trained in collections:
        texts, y = part("train", trained)
        w, b = fit_probe(embed(backbone, texts)[0], y)
        for tested, (x, y_test) in tests.items():
            pred = (x @ w + b).argmax(1).numpy()
            transfer[(trained, tested)] = head_metrics(y_test.numpy(), pred, len(INTENTS))[
                "macro_f1"
            ]
    cfg = backbone.encoder.config
    return EncoderReport(
        name,
        backbone.source,
        int(cfg.num_hidden_layers),
        int(cfg.hidden_size),
        sum(p.numel() for p in backbone.encoder.parameters()),
        n / seconds,
        transfer,
    )


def table(reports: Sequence[EncoderReport]) -> str:
    pairs = list(reports[0].transfer)
    head = " | ".join(f"{a} -> {b}" for a, b in pairs)
    lines = [
        f"| encoder | layers | hidden | parameters | msg/s (threads {torch.get_num_threads()}) "
        f"| {head} |",
        "|---" * (5 + len(pairs)) + "|",
    ]
    for r in reports:
        cells = " | ".join(f"{r.transfer[p]:.3f}" for p in pairs)
        lines.append(
            f"| {r.name} | {r.layers} | {r.hidden} | {r.parameters / 1e6:.1f} M | "
            f"{r.msgs_per_s:.0f} | {cells} |"
        )
    lines += [
        "",
        "Cells: intent macro-F1 of a frozen linear probe, train collection -> test "
        "collection (noisy test part).",
    ]
    return "\n".join(lines)
