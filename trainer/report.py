"""How evaluation results are shown: markdown tables, the report directory, and plots.

``trainer.evaluation`` computes the figures; this module only lays them out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_risk_coverage(
    curves: dict[str, dict[str, Any]],
    operating: dict[str, dict[str, Any]],
    path: Path,
    title: str,
) -> None:
    """One panel per source: both sweeps, and the artifact's operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=True):
        ax.plot(c["ood_coverage"], c["ood_risk"], label="OOD threshold sweep (action conf fixed)")
        ax.plot(
            c["confidence_coverage"],
            c["confidence_risk"],
            "--",
            label="action confidence sweep (no OOD)",
        )
        op = operating[name]
        ax.plot(
            [op["auto_resolved"]],
            [op["false_auto_resolve_rate"]],
            "ro",
            label=f"operating point ({op['false_auto_resolve_rate']:.1%} false)",
        )
        ax.set_xlabel("auto-resolved (share of messages)")
        ax.set_ylabel("false auto-resolves (share of messages)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def head_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per test set and head (the random baseline left out): the long table
    that the model card's model-index and the experiment trackers take."""
    return [
        {
            "dataset": r["dataset"],
            "collection": r["collection"],
            "split": r["split"],
            "head": head,
            "n": m["n"],
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "ece": m["ece"],
        }
        for r in results
        if "split" in r
        for head, m in r["heads"].items()
    ]


def operating_table(rows: Sequence[dict[str, Any]], current: float) -> str:
    sources = list(rows[0]["sources"])
    lines = [
        "| validation quantile | threshold | "
        + " | ".join(f"{s}: auto-resolved / false auto / unfamiliar" for s in sources)
        + " |",
        "|---" * (2 + len(sources)) + "|",
    ]
    for row in rows:
        mark = " (artifact)" if abs(row["quantile"] - current) < 1e-9 else ""
        cells = " | ".join(
            f"{r['auto_resolved']:.1%} / {r['false_auto_resolve_rate']:.1%} / "
            f"{r['reasons'].get('unfamiliar', 0.0):.1%}"
            for r in row["sources"].values()
        )
        lines.append(f"| {row['quantile']}{mark} | {row['threshold']:.3f} | {cells} |")
    return "\n".join(lines)


def source_table(results: Sequence[dict[str, Any]]) -> str:
    """Per source: intent, action, cost, calibration, and what the routing policy does."""
    lines = [
        "| source | trained on it | n | intent acc | intent macro-F1 | action acc | business cost "
        "| intent ECE (all / familiar) | auto-resolved | false auto-resolves (routed) | unfamiliar "
        "| OOD AUROC |",
        "|" + "---|" * 12,
    ]
    for r in results:
        if "routed" not in r:
            continue
        h, rt = r["heads"], r["routed"]
        auroc = f"{r['ood_auroc']:.3f}" if "ood_auroc" in r else "-"
        lines.append(
            f"| {r['dataset']} | {'yes' if r['trained_on'] else '**no**'} | {r['n']} | "
            f"{h['intent']['accuracy']:.4f} | {h['intent']['macro_f1']:.4f} | "
            f"{h['action']['accuracy']:.4f} | {r['business_cost']:.3f} | "
            f"{h['intent']['ece']:.4f} / {rt['intent_ece_familiar']:.4f} | "
            f"{rt['auto_resolved']:.1%} | "
            f"{rt['false_auto_resolves']} ({rt['false_auto_resolve_rate']:.1%}) | "
            f"{rt['reasons'].get('unfamiliar', 0.0):.1%} | {auroc} |"
        )
    return "\n".join(lines)


def transfer_table(models: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
    """Rows: models (named by what they trained on); columns: the test collections.

    Each cell: intent macro-F1 / action accuracy / routed false auto-resolves / intent ECE.
    """
    sources = list(
        dict.fromkeys(r["collection"] for _, rs in models for r in rs if "collection" in r)
    )
    lines = [
        "| trained on | " + " | ".join(sources) + " |",
        "|---" * (len(sources) + 1) + "|",
    ]
    for label, results in models:
        cells = []
        for source in sources:
            r = next((r for r in results if r.get("collection") == source), None)
            if r is None:
                cells.append("-")
                continue
            cells.append(
                f"{r['heads']['intent']['macro_f1']:.3f} / {r['heads']['action']['accuracy']:.3f}"
                f" / {r['routed']['false_auto_resolve_rate']:.1%}"
                f" / {r['heads']['intent']['ece']:.3f}" + ("" if r["trained_on"] else " (transfer)")
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Each cell: intent macro-F1 / action accuracy / false auto-resolves after "
        "routing (share of messages) / intent ECE."
    )
    return "\n".join(lines)


def format_failures(errors: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for name, rows in errors.items():
        lines += [f"## {len(rows)} most confident errors: {name}", ""]
        for f in rows:
            wrong = (
                f"{h} {e['predicted']} (p={e['confidence']}) not {e['expected']}"
                for h, e in f["errors"].items()
            )
            lines.append(f"- `{f['text']}`: " + ", ".join(wrong))
        lines.append("")
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
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if v > m.max() / 2 else "black",
                fontsize=8,
            )
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
        if key in ("failures", "risk_coverage"):
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
    if any("routed" in r for r in results):
        md += ["## per source", "", source_table(results), ""]
    if extra.get("risk_coverage"):
        curves = extra["risk_coverage"]
        operating: dict[str, Any] = {}
        for r in results:  # the curves are the first test set's, which comes first here
            if r.get("collection") in curves:
                operating.setdefault(r["collection"], r["routed"])
        plot_risk_coverage(curves, operating, out_dir / "risk_coverage.png", title)
        md += ["## risk-coverage (noisy test)", "", "![risk-coverage](risk_coverage.png)", ""]
    md.append(format_failures(extra.get("failures", {})))
    text = "\n".join(md)
    (out_dir / "report.md").write_text(text)
    return text


def _table(value: Any) -> list[str]:
    """A dict of dicts as a markdown table, a flat dict as key | value rows."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        cols = list(dict.fromkeys(k for v in value.values() for k in v))
        rows = [
            f"| {name} | " + " | ".join(_cell(v.get(c)) for c in cols) + " |"
            for name, v in value.items()
        ]
        return ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|", *rows]
    if isinstance(value, dict):
        return ["| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in value.items()]]
    return ["```json", json.dumps(value, indent=2), "```"]


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
