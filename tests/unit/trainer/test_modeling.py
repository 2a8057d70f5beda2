"""Training-side model code: backbone resolution, the masked multi-task loss."""

from __future__ import annotations

import pytest
import torch

from trainer.errors import BackboneNotFoundError
from trainer.modeling import IGNORE_INDEX, load_backbone, minilm_dir, multitask_loss


def test_minilm_is_found_offline_in_its_package() -> None:
    path = minilm_dir()
    assert path is not None and (path / "model.safetensors").exists()


def test_a_missing_backbone_names_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # Offline for real: huggingface_hub reads HF_HUB_OFFLINE once, when imported (here by
    # the import of trainer.modeling), so the variable alone left this test waiting ~23 s
    # on a hub it cannot reach, and asking a hub it can reach.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        BackboneNotFoundError,
        match=r"local dir no/such-model \(does not exist\); hub id 'no/such-model'",
    ):
        load_backbone("no/such-model")


def test_loss_skips_unknown_labels_and_heads_without_any() -> None:
    logits = {
        "a": torch.tensor([[2.0, 0.0], [0.0, 2.0]]),
        "b": torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
    }
    labels = {"a": torch.tensor([0, IGNORE_INDEX]), "b": torch.tensor([IGNORE_INDEX, IGNORE_INDEX])}
    loss = multitask_loss(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits["a"][:1], torch.tensor([0]))
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, expected)
    weighted = multitask_loss(logits, labels, head_weights={"a": 2.0})
    torch.testing.assert_close(weighted, 2 * expected)
