"""Padding-free forward: same logits as the padded model, for every supported encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, BertConfig, DistilBertConfig, RobertaConfig

from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier
from worker.model.network import MultiHeadClassifier
from worker.model.packed import PackedClassifier, pack, supports

HEADS = {"a": ("x", "y", "z"), "b": ("p", "q")}
# Lengths that leave most of a padded batch empty, as short chat messages do.
LENGTHS = [2, 9, 3, 17, 5, 5, 30, 4]


def _batch(vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, vocab, size=n).tolist() for n in LENGTHS]


def _padded_logits(model: MultiHeadClassifier, batch: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(map(len, batch))
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, x in enumerate(batch):
        ids[r, : len(x)], mask[r, : len(x)] = torch.tensor(x), 1
    return model(ids, mask)  # type: ignore[no-any-return]


def _model(config: object, pooling: str) -> MultiHeadClassifier:
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config, attn_implementation="sdpa")
    return MultiHeadClassifier(encoder, HEADS, pooling, 0.3).eval()


BERT = BertConfig(
    vocab_size=500,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=64,
)
DISTILBERT = DistilBertConfig(
    vocab_size=500, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64
)


@pytest.mark.parametrize("config", [BERT, DISTILBERT], ids=["bert", "distilbert"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@torch.inference_mode()
def test_packed_logits_equal_padded_ones(config: object, pooling: str) -> None:
    model = _model(config, pooling)
    batch = _batch(500)
    expected = _padded_logits(model, batch)
    got = PackedClassifier(model).eval()(pack(batch))
    for head in HEADS:
        assert got[head].shape == (len(LENGTHS), len(HEADS[head]))
        torch.testing.assert_close(got[head], expected[head], atol=1e-5, rtol=1e-4)


@torch.inference_mode()
def test_a_sequence_sees_only_its_own_tokens() -> None:
    # Each message's logits must not depend on its batch-mates (attention stays inside
    # a sequence even though tokens are packed back to back).
    packed = PackedClassifier(_model(BERT, "mean")).eval()
    batch = _batch(500)
    together = packed(pack(batch))
    for i, one in enumerate(batch):
        alone = packed(pack([one]))
        for head in HEADS:
            torch.testing.assert_close(together[head][i], alone[head][0], atol=1e-5, rtol=1e-4)


def test_pack_describes_the_layout() -> None:
    b = pack([[7, 8, 9], [4], [5, 6]])
    assert b.ids.tolist() == [7, 8, 9, 4, 5, 6]
    assert b.positions.tolist() == [0, 1, 2, 0, 0, 1]
    assert b.seq.tolist() == [0, 0, 0, 1, 2, 2]
    assert b.starts.tolist() == [0, 3, 4]
    assert b.slots.tolist() == [0, 1, 2, 3, 6, 7]  # row * 3 + position, width 3
    assert b.key_mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    with pytest.raises(ValueError, match="at least one token"):
        pack([[1], []])


def test_other_encoders_fall_back_to_the_padded_path() -> None:
    roberta = RobertaConfig(
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=128,
    )
    model = _model(roberta, "mean")
    assert not supports(model)
    with pytest.raises(ValueError, match="no padding-free path"):
        PackedClassifier(model)


@pytest.fixture(scope="module")
def artifact(smoke_artifact: Path) -> Path:
    return smoke_artifact


def test_classifier_packed_and_padded_agree(artifact: Path) -> None:
    packed = Classifier(load_artifact(artifact), "cpu", "float32", padding_free=True)
    padded = Classifier(load_artifact(artifact), "cpu", "float32", padding_free=False)
    assert packed.packed is not None and padded.packed is None
    assert packed.precision == "float32, padding-free"
    texts = ["refund me now", "HELLO??", "the app crashes every time i log in to pay a bill"]
    ids, _ = packed.tokenize(texts)
    a, b = packed.predict(ids), padded.predict(ids)
    for head in a.probs:
        np.testing.assert_allclose(a.probs[head], b.probs[head], atol=1e-5)
    assert a.unfamiliarity is not None and b.unfamiliarity is not None
    np.testing.assert_allclose(a.unfamiliarity, b.unfamiliarity, rtol=1e-4)


@pytest.mark.parametrize(("quantize", "autocast"), [("int8", "none"), ("none", "bfloat16")])
def test_fast_precisions_stay_close_to_fp32(artifact: Path, quantize: str, autocast: str) -> None:
    exact = Classifier(load_artifact(artifact), "cpu", "float32")
    fast = Classifier(load_artifact(artifact), "cpu", "float32", quantize, autocast=autocast)
    texts = ["refund me now", "HELLO??", "my card got charged twice", "reset my password"] * 4
    ids, _ = exact.tokenize(texts)
    a, b = exact.predict(ids), fast.predict(ids)
    for head in a.probs:
        assert b.probs[head].dtype == np.float32
        np.testing.assert_allclose(a.probs[head], b.probs[head], atol=0.05)
