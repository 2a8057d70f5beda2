"""The training loop itself, on a tiny encoder: aux head, determinism, early stopping."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from schemas.labels import HEADS
from trainer.data.records import Example
from trainer.labeling import label_all
from trainer.training import AUX_HEAD, TrainConfig, train

pytestmark = pytest.mark.model  # every test here trains or builds a backbone
SOURCES = {
    "pay_bill": "billing_issue",
    "balance": "billing_issue",
    "pin_change": "account_access",
    "card_declined": "technical_problem",
    "damaged_card": "refund_request",
    "translate": "general_question",
    "weather": "general_question",
    "timer": "general_question",
}


def _examples(n: int) -> list[Example]:
    out = []
    names = list(SOURCES)
    for i in range(n):
        source = names[i % len(names)]
        text = f"{source.replace('_', ' ')} request number {i}"
        out.append(Example(text=text, source=source, **label_all(text, SOURCES[source])))
    return out


CFG = TrainConfig(base_model="tiny", epochs=1, lr=1e-3, batch_size=16, max_length=24, seed=3)


def test_the_source_intent_head_trains_but_is_not_exported() -> None:
    result = train(CFG, _examples(64), _examples(16))
    assert result.training_only_heads == (AUX_HEAD,)
    assert set(result.model.heads) == set(HEADS)
    assert not any(AUX_HEAD in key for key in result.model.state_dict())
    off = train(replace(CFG, aux_source_intent=False), _examples(64), _examples(16))
    assert off.training_only_heads == ()


def test_same_seed_same_weights() -> None:
    a = train(CFG, _examples(32), _examples(8)).model.state_dict()
    b = train(CFG, _examples(32), _examples(8)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_keeps_the_best_epoch() -> None:
    cfg = TrainConfig(base_model="tiny", epochs=6, lr=0.0, batch_size=16, max_length=24, patience=2)
    result = train(cfg, _examples(32), _examples(8))  # lr 0: validation can never improve
    assert len(result.history) == 3  # epoch 1, then two without improvement
    assert result.best_epoch == 1


def test_layer_decay_gives_lower_layers_smaller_learning_rates() -> None:
    from trainer.modeling import load_backbone
    from trainer.training import param_groups
    from worker.model.network import MultiHeadClassifier

    backbone = load_backbone("tiny")  # 2 encoder layers
    model = MultiHeadClassifier(backbone.encoder, HEADS, "mean", 0.1)
    groups = param_groups(model, replace(CFG, lr=1.0, layer_decay=0.5))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["heads.intent.weight"])] == 1.0
    assert lr_of[id(named["encoder.encoder.layer.1.output.dense.weight"])] == 0.5
    assert lr_of[id(named["encoder.encoder.layer.0.output.dense.weight"])] == 0.25
    assert lr_of[id(named["encoder.embeddings.word_embeddings.weight"])] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(named)  # each parameter once
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(named["heads.intent.bias"]) in no_decay
    assert id(named["heads.intent.weight"]) not in no_decay
    flat = param_groups(model, CFG)
    assert {g["lr"] for g in flat} == {CFG.lr}


def test_the_source_head_keeps_collections_apart() -> None:
    from trainer.training import fine_label

    a = Example("x", "billing_issue", None, None, None, "transfer", "clinc")
    b = Example("x", "billing_issue", None, None, None, "transfer", "banking77")
    assert fine_label(a) != fine_label(b)
    assert fine_label(Example("x", None, None, None, None, "transfer")) == "transfer"
