"""The artifact contract: a smoke-trained export reloads identically; broken ones are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from schemas.labels import HEADS
from worker.model.artifact import LoadedModel, load_artifact
from worker.model.errors import ArtifactError
from worker.model.text import pad, tokenize

TEXTS = ["i want a refund NOW!!", "what are your opening hours", "MY CARD WAS DECLINED", "hi"]


def test_smoke_training_exports_a_complete_artifact(smoke_artifact: Path) -> None:
    names = {p.name for p in smoke_artifact.iterdir()}
    assert {
        "model.safetensors",
        "manifest.json",
        "metrics.json",
        "model_card.md",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    manifest = json.loads((smoke_artifact / "manifest.json").read_text())
    assert manifest["heads"] == {h: list(v) for h, v in HEADS.items()}
    assert set(manifest["temperatures"]) == set(HEADS)
    assert manifest["min_action_confidence"] == 0.7
    assert len(manifest["training"]["data_fingerprint"]) == 64
    assert manifest["training"]["git_commit"]
    assert manifest["training"]["sources"] == ["synthetic"]
    ood = manifest["ood"]
    assert ood["method"] == "mahalanobis" and ood["classes"] == 5 and ood["quantile"] == 0.9
    metrics = json.loads((smoke_artifact / "metrics.json").read_text())
    noisy = next(r for r in metrics["results"] if r["dataset"] == "synthetic test_noisy")
    # the threshold admits about ood.quantile of in-distribution messages
    assert 0.75 < 1 - noisy["routed"]["reasons"].get("unfamiliar", 0.0) <= 1.0
    baseline = next(r for r in metrics["results"] if r["dataset"] == "random baseline")
    # even a tiny model trained for seconds must beat chance on synthetic intents
    assert noisy["heads"]["intent"]["accuracy"] > baseline["heads"]["intent"]["accuracy"] + 0.2
    report = smoke_artifact / "report"
    assert (report / "report.md").exists()
    assert len(list(report.glob("confusion_*.png"))) == 8  # 4 heads x (noisy, clean)
    assert (report / "risk_coverage.png").stat().st_size > 5000


def test_reload_gives_identical_logits(smoke_artifact: Path, tmp_path: Path) -> None:
    first = load_artifact(smoke_artifact)
    copy = tmp_path / "copy"
    shutil.copytree(smoke_artifact, copy)  # the directory alone is enough
    second = load_artifact(copy)
    enc = _encode(first, TEXTS)
    with torch.inference_mode():
        a = first.model(enc["input_ids"], enc["attention_mask"])
        b = second.model(enc["input_ids"], enc["attention_mask"])
    for head in HEADS:
        assert torch.equal(a[head], b[head]), head


def test_batched_equals_single_within_1e_4(smoke_artifact: Path) -> None:
    loaded = load_artifact(smoke_artifact)
    with torch.inference_mode():
        enc = _encode(loaded, TEXTS)
        batched = loaded.model(enc["input_ids"], enc["attention_mask"])
        for i, text in enumerate(TEXTS):
            one = _encode(loaded, [text])
            single = loaded.model(one["input_ids"], one["attention_mask"])
            for head in HEADS:
                torch.testing.assert_close(batched[head][i], single[head][0], atol=1e-4, rtol=0)


def test_casing_marker_is_one_token_for_all_caps_only(smoke_artifact: Path) -> None:
    loaded = load_artifact(smoke_artifact)
    m = loaded.manifest
    assert m.casing_marker
    marker_id = loaded.tokenizer.convert_tokens_to_ids(m.casing_marker)
    caps = _encode(loaded, ["MY CARD WAS DECLINED"])
    lower = _encode(loaded, ["my card was declined"])
    assert caps["input_ids"][0, 1].item() == marker_id  # right after [CLS]
    assert marker_id not in lower["input_ids"][0].tolist()


def _encode(loaded: LoadedModel, texts: list[str]) -> dict[str, torch.Tensor]:
    """Padded ids and mask, prepared as the worker prepares them."""
    m = loaded.manifest
    tokens = tokenize(loaded.tokenizer, texts, m.max_length, m.casing_marker)
    ids, mask = pad(tokens.ids, int(loaded.tokenizer.pad_token_id))
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def _broken(smoke_artifact: Path, tmp_path: Path, edit: dict[str, object]) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(smoke_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for key, value in edit.items():
        if value is None:
            manifest.pop(key)
        else:
            manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"temperatures": None}, r"field 'temperatures': Field required"),
        (
            {"heads": {"intent": ["a"], "urgency": [], "sentiment": [], "action": []}},
            "heads must be exactly",
        ),
        ({"pooling": "max"}, "field 'pooling'"),
        ({"weights_sha256": "0" * 64}, r"does not match manifest field 'weights_sha256'"),
        ({"format_version": 1}, r"'format_version' is 1; this release reads 2 \(retrain"),
        ({"ood": None}, r"field 'ood': Field required"),
    ],
)
def test_broken_manifests_are_refused_naming_the_field(
    smoke_artifact: Path, tmp_path: Path, edit: dict[str, object], message: str
) -> None:
    with pytest.raises(ArtifactError, match=message):
        load_artifact(_broken(smoke_artifact, tmp_path, edit))


def test_missing_files_are_named(smoke_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "nomodel"
    shutil.copytree(smoke_artifact, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"missing model\.safetensors"):
        load_artifact(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"missing manifest\.json"):
        load_artifact(copy)


def test_weights_of_another_architecture_are_refused(smoke_artifact: Path, tmp_path: Path) -> None:
    manifest = json.loads((smoke_artifact / "manifest.json").read_text())
    config = dict(manifest["backbone"]["config"], num_hidden_layers=3)
    broken = _broken(
        smoke_artifact, tmp_path, {"backbone": dict(manifest["backbone"], config=config)}
    )
    with pytest.raises(
        ArtifactError, match=r"weights do not fit manifest field 'backbone\.config'"
    ):
        load_artifact(broken)


def test_an_ood_scorer_of_another_shape_is_refused(smoke_artifact: Path, tmp_path: Path) -> None:
    manifest = json.loads((smoke_artifact / "manifest.json").read_text())
    broken = _broken(smoke_artifact, tmp_path, {"ood": dict(manifest["ood"], classes=7)})
    with pytest.raises(ArtifactError, match=r"weights do not fit manifest field 'ood\.classes'"):
        load_artifact(broken)


def test_the_ood_scorer_travels_in_the_weights(smoke_artifact: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(smoke_artifact / "model.safetensors"))
    assert {"ood.whiten", "ood.means"} <= set(state)
    loaded = load_artifact(smoke_artifact)
    assert loaded.model.ood is not None
    assert torch.equal(loaded.model.ood.means, state["ood.means"])


def test_an_artifact_that_does_not_say_what_it_trained_on_is_refused(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    manifest = json.loads((smoke_artifact / "manifest.json").read_text())
    training = dict(manifest["training"], sources=[])
    with pytest.raises(ArtifactError, match=r"field 'training\.sources'"):
        load_artifact(_broken(smoke_artifact, tmp_path, {"training": training}))
