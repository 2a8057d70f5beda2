"""`support-trainer train`: data -> fine-tune -> calibrate -> export -> reload -> evaluate."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas.artifact import ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION
from schemas.labels import HEADS
from trainer import evaluation
from trainer.artifact import export, git_commit, load_artifact
from trainer.calibration import expected_calibration_error, fit_temperature, softmax_np
from trainer.data import splits as split_io
from trainer.data.records import Example
from trainer.modeling import CASING_MARKER
from trainer.training import TrainConfig, encode_examples, predict_logits, train

DEFAULT_MIN_ACTION_CONFIDENCE = 0.7  # the notebook's routing threshold


def examples_fingerprint(splits: dict[str, list[Example]], names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in names:
        for ex in splits[name]:
            h.update(json.dumps(ex.to_json(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def calibrate(
    result: Any, val: list[Example], cfg: TrainConfig
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit one temperature per head on validation; ECE before and after."""
    marker = CASING_MARKER if cfg.casing_marker else None
    enc = encode_examples(result.tokenizer, val, cfg.max_length, marker)
    device = next(result.model.parameters()).device
    logits = predict_logits(
        result.model, enc, result.tokenizer.pad_token_id, cfg.eval_batch_size, device
    )
    temps, report = {}, {}
    for head in HEADS:
        y = enc.labels[head]
        temps[head] = fit_temperature(logits[head], y)
        report[head] = {
            "temperature": temps[head],
            "ece_before": expected_calibration_error(softmax_np(logits[head]), y.numpy()),
            "ece_after": expected_calibration_error(
                softmax_np(logits[head], temps[head]), y.numpy()
            ),
        }
    return temps, report


def caps_sentiment(examples: list[Example], probs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Sentiment accuracy on ALL CAPS texts: what the casing marker is for."""
    idx = [i for i, ex in enumerate(examples) if ex.text.isupper()]
    if not idx:
        return {"n": 0, "sentiment_accuracy": None}
    labels = HEADS["sentiment"]
    hits = [labels[int(probs["sentiment"][i].argmax())] == examples[i].sentiment for i in idx]
    return {"n": len(idx), "sentiment_accuracy": float(np.mean(hits))}


def evaluate_artifact(out: Path, data: dict[str, list[Example]]) -> dict[str, Any]:
    """Evaluate the exported artifact on its test splits; returns metrics for metrics.json."""
    loaded = load_artifact(out)
    results, failures, caps = [], {}, {}
    for name in ("test_noisy", "test_clean"):
        if name not in data:
            continue
        probs = evaluation.probabilities(loaded, data[name])
        results.append(evaluation.score(data[name], probs, name))
        failures[name] = evaluation.failures(data[name], probs)
        caps[name] = caps_sentiment(data[name], probs)
    test = data.get("test_noisy") or data["val"]
    results.append(evaluation.random_baseline(test))
    lat = evaluation.latency(loaded, evaluation.random_texts(test, 64))
    return {"results": results, "failures": failures, "all_caps": caps, "latency": lat}


def run(data: dict[str, list[Example]], cfg: TrainConfig, out: Path, *, preset: str,
        data_source: str, name: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Train, calibrate and export to ``out``; returns the metrics written beside the model."""
    result = train(cfg, data["train"], data["val"])
    temps, calibration = calibrate(result, data["val"], cfg)
    config = result.model.encoder.config.to_dict()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    short = result.backbone_source.rsplit("/", 1)[-1].replace("package:", "").replace("_", "-")
    fields = {
        "format": ARTIFACT_FORMAT, "format_version": ARTIFACT_FORMAT_VERSION,
        "name": name or f"support-router-{short}", "created_at": created,
        "backbone": {"source": result.backbone_source, "model_type": config["model_type"],
                     "config": _json_safe(config)},
        "heads": {h: list(v) for h, v in HEADS.items()},
        "pooling": cfg.pooling, "dropout": cfg.dropout, "max_length": cfg.max_length,
        "casing_marker": CASING_MARKER if cfg.casing_marker else None,
        "temperatures": temps, "min_action_confidence": DEFAULT_MIN_ACTION_CONFIDENCE,
        "training": {
            "data_fingerprint": examples_fingerprint(data, ("train", "val")),
            "data_source": data_source, "git_commit": git_commit(), "seed": cfg.seed,
            "preset": preset, "hyperparameters": cfg.to_json(),
            "best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 1),
        },
    }  # fmt: skip
    manifest = export(out, result.model, result.tokenizer, fields, metrics={}, model_card="")
    evaluated = evaluate_artifact(out, data)
    metrics = {"model": {"name": manifest.name, "version": manifest.version},
               "history": result.history, "calibration": calibration, **evaluated}  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "model_card.md").write_text(model_card(manifest.name, manifest.version, fields, metrics))
    extra = {k: metrics[k] for k in ("calibration", "all_caps", "latency", "failures")}
    evaluation.write_report(
        out / "report", evaluated["results"], extra, f"{manifest.name} {manifest.version}"
    )
    return metrics


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def model_card(name: str, version: str, fields: dict[str, Any], metrics: dict[str, Any]) -> str:
    t = fields["training"]
    lines = [
        f"# {name} {version}", "",
        "## Intended use", "",
        "Routing English customer-support chat messages: intent (5 classes), urgency,",
        "sentiment and the action (auto-resolve, ask for more information, escalate to a",
        "human). Its output feeds support-router's routing policy, which sends",
        "low-confidence actions to a fallback queue.",
        "It is a triage aid, not a decision maker: every escalation still reaches a person.", "",
        "## Data", "",
        f"- source: {t['data_source']} (preset `{t['preset']}`),"
        f" fingerprint `{t['data_fingerprint'][:16]}`",
        "- intents mapped from CLINC150 per docs/labels.md; urgency, sentiment and action are",
        "  keyword heuristics computed after noise augmentation (slang, typos, recasing)",
        f"- backbone: {fields['backbone']['source']}; code at commit `{t['git_commit']}`", "",
        "## Metrics", "", evaluation.summary_table(metrics["results"]), "",
        "Calibration (validation, temperature scaling): " + ", ".join(
            f"{h} ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f} (T={c['temperature']:.3f})"
            for h, c in metrics["calibration"].items()), "",
        "## Limitations", "",
        "- urgency, sentiment and action labels are heuristics: the model learns the rules",
        "  (keywords, '!' and ALL CAPS), not real customer emotion; it inherits their blind spots",
        "- CLINC150 is banking/travel/small-talk phrasing; other domains need their own mapping",
        "  and data (support-trainer accepts labelled JSONL/CSV)",
        "- English only; text beyond max_length tokens is truncated",
        "- general_question is the majority class; the rare intents have few training rows",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def with_overrides(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def load_or_build(
    spec: split_io.DataSpec, data_dir: Path | None, *, skip_invalid: bool = False
) -> tuple[dict[str, list[Example]], str]:
    if data_dir is not None:
        splits, skipped = split_io.read(data_dir, skip_invalid=skip_invalid)
        if skipped:
            print(f"skipped {skipped} invalid lines in {data_dir}", flush=True)
        return splits, f"files:{data_dir}"
    origin = spec.source if spec.source != "clinc" else f"clinc:{spec.clinc_path}"
    return split_io.build(spec), origin + (f" (limit {spec.limit})" if spec.limit else "")
