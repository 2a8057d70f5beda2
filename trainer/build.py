"""`support-trainer train`: data -> fine-tune -> calibrate -> export -> reload -> evaluate."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schemas.artifact import ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION
from schemas.labels import HEADS
from trainer import evaluation, report
from trainer.artifact import export, git_commit
from trainer.calibration import expected_calibration_error, fit_temperature, softmax_np
from trainer.data import splits as split_io
from trainer.data.records import Example
from trainer.model_card import model_card
from trainer.training import (
    EpochHook,
    TrainConfig,
    TrainResult,
    encode_examples,
    fine_label,
    predict_outputs,
    train,
)
from worker.model.artifact import load_artifact
from worker.model.network import MahalanobisScorer
from worker.model.text import CASING_MARKER
from worker.routing import DEFAULT_MIN_ACTION_CONFIDENCE

TEST_SPLITS = ("test_noisy", "test_clean")


def examples_fingerprint(splits: dict[str, list[Example]], names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in names:
        for ex in splits[name]:
            h.update(json.dumps(ex.to_json(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


@dataclass
class Fitted:
    """What is fitted after training: temperatures, the OOD scorer and its threshold."""

    temperatures: dict[str, float]
    calibration: dict[str, Any]
    ood: dict[str, Any]


def fit_after_training(
    result: TrainResult, train_set: list[Example], val: list[Example], cfg: TrainConfig
) -> Fitted:
    """Attach the OOD scorer to ``result.model``; fit temperatures and the OOD threshold.

    Temperatures: one per head, on validation (every trained collection, so the
    calibration is fitted on their mix). OOD: class means and covariance of the training
    embeddings, with the threshold at the ``ood_quantile`` of validation scores.
    """
    marker = CASING_MARKER if cfg.casing_marker else None
    device = next(result.model.parameters()).device
    pad = result.tokenizer.pad_token_id

    def outputs(examples: list[Example]) -> tuple[Any, Any, Any]:
        enc = encode_examples(result.tokenizer, examples, cfg.max_length, marker)
        logits, pooled = predict_outputs(result.model, enc, pad, cfg.eval_batch_size, device)
        return enc, logits, pooled

    # One class per source intent where the data has them, else per support intent. A row
    # with neither (an agent's correction of the urgency alone) has no class to join.
    classed = [ex for ex in train_set if ex.source or ex.intent]
    _, _, train_pooled = outputs(classed)
    names = [fine_label(ex) if ex.source else str(ex.intent) for ex in classed]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[name] for name in names])
    result.model.ood = MahalanobisScorer.fit(train_pooled, labels).to(device)
    val_enc, val_logits, val_pooled = outputs(val)
    val_scores = result.model.ood(val_pooled.to(device)).cpu().numpy()
    threshold = float(np.quantile(val_scores, cfg.ood_quantile))
    ood = {
        "method": "mahalanobis",
        "classes": len(classes),
        "threshold": threshold,
        "quantile": cfg.ood_quantile,
        "fitted_rows": len(classed),
    }
    temps, report = {}, {}
    for head in HEADS:
        y = val_enc.labels[head]
        temps[head] = fit_temperature(val_logits[head], y)
        report[head] = {
            "temperature": temps[head],
            "ece_before": expected_calibration_error(softmax_np(val_logits[head]), y.numpy()),
            "ece_after": expected_calibration_error(
                softmax_np(val_logits[head], temps[head]), y.numpy()
            ),
        }
    return Fitted(temps, report, ood)


def caps_sentiment(examples: list[Example], probs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Sentiment accuracy on ALL CAPS texts: what the casing marker is for."""
    idx = [i for i, ex in enumerate(examples) if ex.text.isupper()]
    if not idx:
        return {"n": 0, "sentiment_accuracy": None}
    labels = HEADS["sentiment"]
    hits = [labels[int(probs["sentiment"][i].argmax())] == examples[i].sentiment for i in idx]
    return {"n": len(idx), "sentiment_accuracy": float(np.mean(hits))}


def evaluate_artifact(out: Path, data: dict[str, list[Example]]) -> dict[str, Any]:
    """Evaluate the exported artifact on its test splits, per source; returns metrics for
    metrics.json."""
    classifier = evaluation.runtime(load_artifact(out))
    results, failures, caps, curves = [], {}, {}, {}
    for name in TEST_SPLITS:
        if not data.get(name):
            continue
        scored = evaluation.evaluate_sources(classifier, data[name], name)
        results += scored.results
        failures.update(scored.errors)
        if name == "test_noisy":
            curves = scored.curves
        caps[name] = caps_sentiment(data[name], scored.predictions.probs)
    test = data.get("test_noisy") or data["val"]
    results.append(evaluation.random_baseline(test))
    lat = evaluation.latency(classifier, evaluation.random_texts(test, 64))
    return {
        "results": results,
        "failures": failures,
        "all_caps": caps,
        "latency": lat,
        "risk_coverage": curves,
    }


@dataclass(frozen=True)
class Provenance:
    """What an artifact's manifest says about where it came from."""

    name: str
    preset: str
    data_source: str
    sources: tuple[str, ...]
    lineage: dict[str, Any] | None = None  # a fine-tune's parent and feedback


def run(
    data: dict[str, list[Example]],
    cfg: TrainConfig,
    out: Path,
    *,
    preset: str,
    data_source: str,
    sources: tuple[str, ...],
    name: str | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train, calibrate, fit the OOD scorer and export to ``out``; returns the metrics
    written beside the model. ``on_epoch`` gets each epoch's history row."""
    started = time.monotonic()
    result = train(cfg, data["train"], data["val"], on_epoch)
    short = result.backbone_source.rsplit("/", 1)[-1].replace("package:", "").replace("_", "-")
    provenance = Provenance(name or f"support-router-{short}", preset, data_source, sources)
    return finish(result, data, cfg, out, provenance, started)


def finish(
    result: TrainResult,
    data: dict[str, list[Example]],
    cfg: TrainConfig,
    out: Path,
    provenance: Provenance,
    started: float,
) -> dict[str, Any]:
    """After training: fit the temperatures and the OOD scorer on ``data``'s train and
    val, export to ``out``, evaluate the export on ``data``'s test splits and write
    metrics.json, model_card.md and report/; returns the metrics."""
    _progress(
        f"fitting the OOD scorer and the temperatures ({len(data['train'])} train and "
        f"{len(data['val'])} validation rows)",
        started,
    )
    fitted = fit_after_training(result, data["train"], data["val"], cfg)
    config = result.model.encoder.config.to_dict()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    fields = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_FORMAT_VERSION,
        "name": provenance.name,
        "created_at": created,
        "backbone": {
            "source": result.backbone_source,
            "model_type": config["model_type"],
            "config": _json_safe(config),
        },
        "heads": {h: list(v) for h, v in HEADS.items()},
        "pooling": cfg.pooling,
        "dropout": cfg.dropout,
        "max_length": cfg.max_length,
        "casing_marker": CASING_MARKER if cfg.casing_marker else None,
        "temperatures": fitted.temperatures,
        "min_action_confidence": DEFAULT_MIN_ACTION_CONFIDENCE,
        "ood": fitted.ood,
        "training": {
            "data_fingerprint": examples_fingerprint(data, ("train", "val")),
            "data_source": provenance.data_source,
            "sources": list(provenance.sources),
            "git_commit": git_commit(),
            "seed": cfg.seed,
            "preset": provenance.preset,
            "hyperparameters": cfg.to_json(),
            "best_epoch": result.best_epoch,
            "train_seconds": round(result.seconds, 1),
        },
        "lineage": provenance.lineage,
    }
    manifest = export(out, result.model, result.tokenizer, fields, metrics={}, model_card="")
    tests = [f"{name} ({len(data[name])} rows)" for name in TEST_SPLITS if data.get(name)]
    _progress(f"exported {out}; evaluating it on {' and '.join(tests) or 'nothing'}", started)
    evaluated = evaluate_artifact(out, data)
    metrics = {
        "model": {"name": manifest.name, "version": manifest.version},
        "history": result.history,
        "calibration": fitted.calibration,
        "ood": fitted.ood,
        **evaluated,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "model_card.md").write_text(model_card(manifest.name, manifest.version, fields, metrics))
    extra = {
        k: metrics[k]
        for k in ("calibration", "ood", "all_caps", "latency", "failures", "risk_coverage")
    }
    report.write_report(
        out / "report", evaluated["results"], extra, f"{manifest.name} {manifest.version}"
    )
    _progress("done", started)
    return metrics


def _progress(what: str, started: float) -> None:
    """One line per step after training, so a long silent step is never a mystery."""
    print(f"{what} ({time.monotonic() - started:.0f}s)", flush=True)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def with_overrides(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def load_or_build(
    spec: split_io.DataSpec, data_dir: Path | None, *, skip_invalid: bool = False
) -> tuple[dict[str, list[Example]], str, tuple[str, ...]]:
    """The splits, a description of where they came from, and the collections trained on."""
    if data_dir is not None:
        splits, skipped = split_io.read(data_dir, skip_invalid=skip_invalid)
        if skipped:
            print(f"skipped {skipped} invalid lines in {data_dir}", flush=True)
        trained = sorted({ex.collection or data_dir.name for ex in splits["train"]})
        return splits, f"files:{data_dir}", tuple(trained)
    paths = {"clinc": spec.clinc_path, "banking77": spec.banking77_path}
    origin = ", ".join(f"{s}:{paths[s]}" if paths.get(s) else s for s in spec.sources)
    if spec.train_sources is not None:
        origin += f"; trained on {', '.join(spec.train_sources)}"
    limit = f" (limit {spec.limit}, {spec.subset} train rows)" if spec.limit else ""
    return split_io.build(spec), origin + limit, spec.trained_collections()
