"""Evaluate an artifact on labelled examples and write report.md, metrics.json and plots."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from schemas.labels import HEADS
from trainer.artifact import LoadedModel
from trainer.calibration import expected_calibration_error
from trainer.data.records import Example
from trainer.modeling import calibrated_probabilities, encode
from trainer.scoring import IGNORE_INDEX, business_cost, head_metrics
from trainer.training import encode_examples, predict_logits

TOP_FAILURES = 10


def label_ids(examples: Sequence[Example], head: str) -> np.ndarray:
    names = HEADS[head]
    return np.array([names.index(v) if (v := ex.label(head)) else IGNORE_INDEX for ex in examples])


def probabilities(
    loaded: LoadedModel, examples: Sequence[Example], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Calibrated class probabilities per head, [N, C], in example order."""
    m = loaded.manifest
    enc = encode_examples(loaded.tokenizer, examples, m.max_length, m.casing_marker)
    device = next(loaded.model.parameters()).device
    logits = predict_logits(loaded.model, enc, loaded.tokenizer.pad_token_id, batch_size, device)
    return {h: p.numpy() for h, p in calibrated_probabilities(logits, m.temperatures).items()}


def score(examples: Sequence[Example], probs: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    """Per-head metrics, ECE and the business cost for one data set."""
    result: dict[str, Any] = {"dataset": name, "n": len(examples), "heads": {}}
    for head, labels in HEADS.items():
        y = label_ids(examples, head)
        pred = probs[head].argmax(1)
        metrics = head_metrics(y, pred, len(labels))
        metrics["ece"] = expected_calibration_error(probs[head], y)
        metrics["labels"] = list(labels)
        result["heads"][head] = metrics
    accs = [result["heads"][h]["accuracy"] for h in HEADS]
    result["overall_accuracy"] = float(np.mean(accs))
    actions = HEADS["action"]
    result.update(
        business_cost(
            [ex.action for ex in examples], [actions[i] for i in probs["action"].argmax(1)]
        )
    )
    return result


def random_baseline(examples: Sequence[Example], seed: int = 42) -> dict[str, Any]:
    """Uniformly random labels per head, scored like the model."""
    rng = np.random.default_rng(seed)
    probs = {h: np.eye(len(ls))[rng.integers(0, len(ls), len(examples))] for h, ls in HEADS.items()}
    return score(examples, probs, "random baseline")


def failures(
    examples: Sequence[Example], probs: dict[str, np.ndarray], k: int = TOP_FAILURES
) -> list[dict[str, Any]]:
    """The k worst: most wrong heads first, then the most confident wrong prediction."""
    rows: list[tuple[int, float, dict[str, Any]]] = []
    for i, ex in enumerate(examples):
        wrong: dict[str, dict[str, Any]] = {}
        for head, labels in HEADS.items():
            truth, guess = ex.label(head), int(probs[head][i].argmax())
            if truth is not None and labels[guess] != truth:
                wrong[head] = {"predicted": labels[guess], "expected": truth,
                               "confidence": round(float(probs[head][i][guess]), 4)}  # fmt: skip
        if wrong:
            top = max(w["confidence"] for w in wrong.values())
            rows.append((len(wrong), top, {"text": ex.text, "errors": wrong}))
    rows.sort(key=lambda r: (-r[0], -r[1]))
    return [r[2] for r in rows[:k]]


@torch.inference_mode()
def latency(
    loaded: LoadedModel, texts: Sequence[str], batch_size: int = 64, repeats: int = 30
) -> dict[str, Any]:
    """Median wall time for one message and for one batch, tokenization included."""
    m, model = loaded.manifest, loaded.model
    device = next(model.parameters()).device

    def run(batch: Sequence[str]) -> float:
        started = time.perf_counter()
        enc = encode(loaded.tokenizer, batch, m.max_length, m.casing_marker)
        logits = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        calibrated_probabilities(logits, m.temperatures)["action"].cpu()
        return time.perf_counter() - started

    batch = list(texts[:batch_size])
    run(batch)  # warm-up: first calls allocate
    single = statistics.median(run([texts[i % len(texts)]]) for i in range(repeats))
    batched = statistics.median(run(batch) for _ in range(max(3, repeats // 3)))
    return {
        "single_ms": single * 1000,
        "batch_size": len(batch),
        "batch_ms": batched * 1000,
        "batch_msgs_per_s": len(batch) / batched,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def summary_table(results: Sequence[dict[str, Any]]) -> str:
    """The notebook's comparison table: one row per data set or baseline."""
    head = (
        "| model / data | overall | intent | intent macro-F1 | urgency | sentiment | action "
        "| business cost | false esc. | false auto |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        h = r["heads"]
        lines.append(
            f"| {r['dataset']} | {r['overall_accuracy']:.4f} | {h['intent']['accuracy']:.4f} | "
            f"{h['intent']['macro_f1']:.4f} | {h['urgency']['accuracy']:.4f} | "
            f"{h['sentiment']['accuracy']:.4f} | {h['action']['accuracy']:.4f} | "
            f"{r['business_cost']:.3f} | {r['false_escalations']} | {r['false_auto_resolves']} |"
        )
    return "\n".join(lines)


def plot_confusions(result: dict[str, Any], out_dir: Path) -> list[str]:
    """One PNG per head: the confusion matrix with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    slug = result["dataset"].replace(" ", "_").replace("/", "_")
    for head, metrics in result["heads"].items():
        m = np.array(metrics["confusion"])
        fig, ax = plt.subplots(figsize=(1.2 * len(m) + 2.5, 1.0 * len(m) + 2))
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(m)), metrics["labels"], rotation=35, ha="right")
        ax.set_yticks(range(len(m)), metrics["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{head} ({result['dataset']}), acc {metrics['accuracy']:.3f}")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > m.max() / 2 else "black", fontsize=8)  # fmt: skip
        fig.tight_layout()
        name = f"confusion_{slug}_{head}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def write_report(
    out_dir: Path, results: list[dict[str, Any]], extra: dict[str, Any], title: str
) -> str:
    """report.md + metrics.json + PNGs into out_dir; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        r["dataset"]: plot_confusions(r, out_dir)
        for r in results
        if r["dataset"] != "random baseline"
    }
    metrics = {"results": results, **extra}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    md = [f"# {title}", "", summary_table(results), ""]
    for key, value in extra.items():
        if key == "failures":
            continue
        md += [f"## {key}", "", *_table(value), ""]
    for r in results:
        if r["dataset"] == "random baseline":
            continue
        md += [
            f"## {r['dataset']}: per head",
            "",
            "| head | accuracy | macro-F1 | ECE |",
            "|---|---|---|---|",
        ]
        md += [
            f"| {h} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.4f} |"
            for h, m in r["heads"].items()
        ]
        md += ["", *[f"![{p}]({p})" for p in plots[r["dataset"]]], ""]
    for name, rows in extra.get("failures", {}).items():
        md += [f"## top failures: {name}", ""]
        for f in rows:
            errors = (
                f"{h} {e['predicted']} (p={e['confidence']}) not {e['expected']}"
                for h, e in f["errors"].items()
            )
            md.append(f"- `{f['text']}`: " + ", ".join(errors))
        md.append("")
    text = "\n".join(md)
    (out_dir / "report.md").write_text(text)
    return text


def _table(value: Any) -> list[str]:
    """A dict of dicts as a markdown table, a flat dict as key | value rows."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        cols = list(dict.fromkeys(k for v in value.values() for k in v))
        rows = [f"| {name} | " + " | ".join(_cell(v.get(c)) for c in cols) + " |"
                for name, v in value.items()]  # fmt: skip
        return ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|", *rows]
    if isinstance(value, dict):
        return ["| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in value.items()]]
    return ["```json", json.dumps(value, indent=2), "```"]


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def random_texts(examples: Sequence[Example], n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [ex.text for ex in rng.sample(list(examples), min(n, len(examples)))]
