"""Multi-task fine-tuning with accelerate: reads top to bottom like nanoGPT's train.py.

lr schedule (linear warmup, linear decay) -> per epoch: steps, then validation,
best-checkpoint bookkeeping and early stopping -> best weights restored.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from schemas.labels import HEADS
from trainer.data.records import Example
from trainer.modeling import add_casing_marker, load_backbone, multitask_loss
from trainer.scoring import IGNORE_INDEX, head_metrics
from worker.model.network import MultiHeadClassifier
from worker.model.text import CASING_MARKER, tokenize

log = logging.getLogger(__name__)
AUX_HEAD = "source_intent"
# Called with each epoch's history row (train_loss, validation scores per head) as soon as
# it is known: how experiment trackers (trainer.tracking) follow a run the loop knows nothing of.
EpochHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults are the notebook's selected config (config2)."""

    base_model: str = "auto"
    pooling: str = "mean"
    dropout: float = 0.3
    max_length: int = 128
    casing_marker: bool = True
    lr: float = 3e-5
    epochs: int = 4
    batch_size: int = 32  # the notebook's 8 is too slow on 2 CPU cores; 32 trains as well
    eval_batch_size: int = 256
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    patience: int = 2
    seed: int = 42
    head_weights: dict[str, float] = field(default_factory=dict)
    class_weighting: bool = False
    # Training-only head over the source intents (CLINC's 151): general_question lumps
    # 130 of them together, and fine-grained supervision keeps the encoder separating
    # them from the small support intents. Dropped before export; the artifact has 4 heads.
    aux_source_intent: bool = True
    # Layer-wise lr decay: the top encoder layer trains at lr * decay, the one below at
    # lr * decay^2, ..., the embeddings lowest; 1.0 = one lr for all. Lower layers keep
    # more of the pretrained sentence encoder, which is what transfers across collections.
    layer_decay: float = 1.0
    # Where the unfamiliarity threshold sits: this share of in-distribution validation
    # messages scores at or below it. 0.90 kept false auto-resolves under 3% on a
    # collection the model never saw (docs/model.md, "Operating point").
    ood_quantile: float = 0.9
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Encoded:
    """Token ids per example (unpadded) and label ids per head (-100 = unknown)."""

    ids: list[list[int]]
    labels: dict[str, torch.Tensor]


@dataclass
class TrainResult:
    model: MultiHeadClassifier
    tokenizer: Any
    backbone_source: str
    history: list[dict[str, Any]]
    best_epoch: int
    seconds: float
    training_only_heads: tuple[str, ...] = ()


def encode_examples(
    tokenizer: Any, examples: Sequence[Example], max_length: int, marker: str | None
) -> Encoded:
    # The worker's own text preparation: the model trains on the ids it will serve on.
    ids = tokenize(tokenizer, [ex.text for ex in examples], max_length, marker).ids
    labels = {
        head: torch.tensor(
            [
                names.index(v) if (v := ex.label(head)) is not None else IGNORE_INDEX
                for ex in examples
            ]
        )
        for head, names in HEADS.items()
    }
    return Encoded(ids, labels)


class LengthGroupedSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: less padding, same randomness across epochs."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        self.epoch += 1
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        chunk = self.batch_size * 50
        batches = []
        for start in range(0, len(order), chunk):
            group = sorted(order[start : start + chunk], key=lambda i: self.lengths[i])
            batches += [
                group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)
            ]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def collate(enc: Encoded, pad_id: int, index: list[int]) -> dict[str, torch.Tensor]:
    width = max(len(enc.ids[i]) for i in index)
    input_ids = torch.full((len(index), width), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(index), width), dtype=torch.long)
    for row, i in enumerate(index):
        input_ids[row, : len(enc.ids[i])] = torch.tensor(enc.ids[i])
        mask[row, : len(enc.ids[i])] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    batch.update({f"label_{h}": labels[index] for h, labels in enc.labels.items()})
    return batch


@torch.inference_mode()
def predict_outputs(
    model: MultiHeadClassifier, enc: Encoded, pad_id: int, batch_size: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Logits per head [N, C] and pooled embeddings [N, H], in example order, batched by
    length for speed."""
    model.eval()
    order = sorted(range(len(enc.ids)), key=lambda i: len(enc.ids[i]))
    out: dict[str, list[torch.Tensor]] = {h: [] for h in HEADS}
    pooled_parts: list[torch.Tensor] = []
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = collate(enc, pad_id, index)
        pooled = model.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        logits = model.classify(pooled)
        for h in HEADS:
            out[h].append(logits[h].float().cpu())
        pooled_parts.append(pooled.float().cpu())
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    logits_all = {h: torch.cat(parts)[inverse] for h, parts in out.items()}
    return logits_all, torch.cat(pooled_parts)[inverse]


def predict_logits(
    model: MultiHeadClassifier, enc: Encoded, pad_id: int, batch_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Logits per head [N, C] in example order."""
    return predict_outputs(model, enc, pad_id, batch_size, device)[0]


def fine_label(ex: Example) -> str:
    """The source intent qualified by its collection: CLINC's and Banking77's never merge."""
    return f"{ex.collection}:{ex.source}" if ex.collection else ex.source


def layer_depth(name: str, layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, layers + 1 for heads and pooling."""
    if "embeddings" in name:
        return 0
    match = re.search(r"\.layer\.(\d+)\.", name)
    if match and name.startswith("encoder."):
        return int(match.group(1)) + 1
    return layers + 1


def param_groups(model: MultiHeadClassifier, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: per depth for layer-wise lr decay, and no weight decay on biases and
    LayerNorm weights, as in BERT's recipe."""
    layers = int(model.encoder.config.num_hidden_layers)
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        groups.setdefault((layer_depth(name, layers), p.ndim >= 2), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decays else 0.0,
            "lr": cfg.lr * cfg.layer_decay ** (layers + 1 - depth),
        }
        for (depth, decays), params in sorted(groups.items())
    ]


def class_weights(enc: Encoded) -> dict[str, torch.Tensor]:
    """sqrt inverse frequency, normalised to mean 1: helps minority intents without swamping."""
    weights = {}
    for head, names in HEADS.items():
        y = enc.labels[head][enc.labels[head] != IGNORE_INDEX]
        counts = torch.bincount(y, minlength=len(names)).float().clamp(min=1)
        w = counts.sum().div(counts).sqrt()
        weights[head] = w / w.mean()
    return weights


def selection_score(logits: dict[str, torch.Tensor], enc: Encoded) -> dict[str, float]:
    """Per-head accuracy and macro-F1 on validation, and their mean macro-F1 (the selector)."""
    scores: dict[str, float] = {}
    for head, names in HEADS.items():
        m = head_metrics(enc.labels[head].numpy(), logits[head].argmax(-1).numpy(), len(names))
        scores[f"{head}_accuracy"] = m["accuracy"]
        scores[f"{head}_macro_f1"] = m["macro_f1"]
    scores["mean_macro_f1"] = float(np.mean([scores[f"{h}_macro_f1"] for h in HEADS]))
    return scores


def accelerator_for(cfg: TrainConfig) -> Accelerator:
    """The device, precision, torch threads and seed a training run uses."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    use_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    bf16 = not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(cpu=use_cpu, mixed_precision="bf16" if bf16 else "no")
    set_seed(cfg.seed)
    return accelerator


def train(
    cfg: TrainConfig,
    train_set: Sequence[Example],
    val_set: Sequence[Example],
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Fine-tune a fresh model on a pretrained backbone (``cfg.base_model``)."""
    started = time.monotonic()
    accelerator = accelerator_for(cfg)
    backbone = load_backbone(cfg.base_model)
    if cfg.casing_marker:
        add_casing_marker(backbone, CASING_MARKER)
    heads: dict[str, tuple[str, ...]] = dict(HEADS)
    sources = tuple(sorted({fine_label(ex) for ex in train_set if ex.source}))
    aux = sources if cfg.aux_source_intent and len(sources) > len(HEADS["intent"]) else ()
    if aux:
        heads[AUX_HEAD] = aux
    model = MultiHeadClassifier(backbone.encoder, heads, cfg.pooling, cfg.dropout)
    return fit(
        model,
        backbone.tokenizer,
        backbone.source,
        cfg,
        train_set,
        val_set,
        accelerator=accelerator,
        aux_sources=aux,
        started=started,
        on_epoch=on_epoch,
    )


def fit(
    model: MultiHeadClassifier,
    tok: Any,
    backbone_source: str,
    cfg: TrainConfig,
    train_set: Sequence[Example],
    val_set: Sequence[Example],
    *,
    accelerator: Accelerator,
    aux_sources: tuple[str, ...] = (),
    started: float | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """The loop for any model with the four heads, fresh or warm-started from an artifact:
    ``tok`` must already hold the casing marker when ``cfg.casing_marker`` is set, and
    ``aux_sources`` names the classes of the model's AUX_HEAD, if it has one."""
    started = time.monotonic() if started is None else started
    marker = CASING_MARKER if cfg.casing_marker else None
    train_enc = encode_examples(tok, train_set, cfg.max_length, marker)
    val_enc = encode_examples(tok, val_set, cfg.max_length, marker)
    heads = list(model.heads)
    if AUX_HEAD in model.heads:
        index = {s: i for i, s in enumerate(aux_sources)}
        train_enc.labels[AUX_HEAD] = torch.tensor(
            [index.get(fine_label(ex), IGNORE_INDEX) for ex in train_set]
        )

    sampler = LengthGroupedSampler([len(i) for i in train_enc.ids], cfg.batch_size, cfg.seed)
    loader: DataLoader[Any] = DataLoader(
        cast(Any, range(len(train_enc.ids))),
        batch_sampler=sampler,
        collate_fn=lambda idx: collate(train_enc, tok.pad_token_id, idx),
    )
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr)
    total_steps = len(sampler) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    cw = (
        {h: w.to(device) for h, w in class_weights(train_enc).items()}
        if cfg.class_weighting
        else None
    )

    print(
        f"training {cfg.epochs} epochs of {len(sampler)} steps ({len(train_set)} rows, batch "
        f"{cfg.batch_size}) on {device.type}, {torch.get_num_threads()} threads; validating "
        f"on {len(val_set)} rows after each epoch ({time.monotonic() - started:.0f}s)",
        flush=True,
    )
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state, stale = -1.0, 0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        running, bar = (
            0.0,
            tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=None),
        )
        for step, batch in enumerate(bar, start=1):
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            labels = {h: batch[f"label_{h}"].to(device) for h in heads}
            loss = multitask_loss(logits, labels, cfg.head_weights or None, cw)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.item()
            bar.set_postfix(loss=f"{running / step:.4f}")
            if bar.disable and step % max(1, len(sampler) // 10) == 0:
                # No TTY (CI, a log file): a plain line every tenth of an epoch instead.
                print(
                    f"epoch {epoch} step {step}/{len(sampler)} loss {running / step:.4f} "
                    f"({time.monotonic() - started:.0f}s)",
                    flush=True,
                )
        val_logits = predict_logits(model, val_enc, tok.pad_token_id, cfg.eval_batch_size, device)
        scores = selection_score(val_logits, val_enc)
        row = {"epoch": epoch, "train_loss": running / max(1, len(sampler)), **scores}
        history.append(row)
        log.info("epoch %d %s", epoch, {k: round(v, 4) for k, v in row.items()})
        print(_epoch_line(row), flush=True)
        if on_epoch is not None:
            on_epoch(row)
        if scores["mean_macro_f1"] > best_score:
            best_score, best_epoch, stale = scores["mean_macro_f1"], epoch, 0
            best_state = copy.deepcopy(accelerator.unwrap_model(model).state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                print(f"early stop: no better validation for {cfg.patience} epochs", flush=True)
                break
    final = accelerator.unwrap_model(model)
    if best_state is not None:
        final.load_state_dict(best_state)
    dropped = tuple(h for h in final.heads if h not in HEADS)
    for head in dropped:
        del final.heads[head]  # training-only; the artifact contract is the 4 heads
    final.eval()
    return TrainResult(
        final, tok, backbone_source, history, best_epoch, time.monotonic() - started, dropped
    )


def _epoch_line(row: dict[str, Any]) -> str:
    heads = "  ".join(f"{h}={row[f'{h}_accuracy']:.4f}" for h in HEADS)
    return (
        f"epoch {row['epoch']}: train_loss={row['train_loss']:.4f}  val acc {heads}  "
        f"mean macro-F1={row['mean_macro_f1']:.4f}"
    )
