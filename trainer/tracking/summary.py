"""What a tracker logs, from a run's config, data and metrics: flat params, the scalars
of each epoch and of the evaluation, and the evaluation's tables. Pure: no tracker here."""

from __future__ import annotations

import json
from typing import Any

from trainer import report
from trainer.build import TEST_SPLITS, examples_fingerprint
from trainer.data.records import Example
from trainer.training import TrainConfig


def run_params(
    cfg: TrainConfig,
    data: dict[str, list[Example]],
    *,
    preset: str,
    data_source: str,
    sources: tuple[str, ...],
) -> dict[str, str]:
    """Hyperparameters, where the data came from, each split's size and hash, and the seed:
    what two runs are compared on."""
    params = {f"train.{k}": _text(v) for k, v in cfg.to_json().items()}
    params |= {
        "preset": preset,
        "base_model": cfg.base_model,
        "seed": str(cfg.seed),
        "data.source": data_source,
        "data.collections": ",".join(sources),
        # the manifest's data_fingerprint: train and validation together
        "data.fingerprint": examples_fingerprint(data, ("train", "val")),
    }
    for split in ("train", "val", *TEST_SPLITS):
        if data.get(split):
            params[f"data.{split}.rows"] = str(len(data[split]))
            params[f"data.{split}.sha256"] = examples_fingerprint(data, (split,))
    return params


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """An epoch's history row (trainer.training) as tracker names: train/loss,
    val/<head>_accuracy, val/<head>_macro_f1, val/mean_macro_f1."""
    scalars = {"train/loss": float(row["train_loss"])}
    scalars |= {
        f"val/{k}": float(v)
        for k, v in row.items()
        if k not in {"epoch", "train_loss"} and isinstance(v, int | float)
    }
    return scalars


def final_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The exported model's figures: per test set and head, per test set the routing's
    cost, and per head the calibration."""
    scalars: dict[str, float] = {}
    for row in report.head_rows(metrics["results"]):
        where = f"{row['split']}/{row['collection']}"
        scalars[f"{where}/{row['head']}_accuracy"] = row["accuracy"]
        scalars[f"{where}/{row['head']}_macro_f1"] = row["macro_f1"]
        scalars[f"{where}/{row['head']}_ece"] = row["ece"]
    for row in dataset_rows(metrics["results"]):
        where = f"{row['split']}/{row['collection']}"
        for key in (
            "overall_accuracy",
            "business_cost",
            "false_escalations",
            "false_auto_resolves",
        ):
            scalars[f"{where}/{key}"] = float(row[key])
    for head, c in metrics["calibration"].items():
        scalars[f"calibration/{head}_ece"] = c["ece_after"]
        scalars[f"calibration/{head}_temperature"] = c["temperature"]
    return scalars


def dataset_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per test set (the random baseline left out): what the routing did with it."""
    return [
        {
            "dataset": r["dataset"],
            "collection": r["collection"],
            "split": r["split"],
            "n": r["n"],
            "trained_on": r["trained_on"],
            "overall_accuracy": r["overall_accuracy"],
            "business_cost": r["business_cost"],
            "false_escalations": r["false_escalations"],
            "false_auto_resolves": r["false_auto_resolves"],
        }
        for r in results
        if "split" in r
    ]


def columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows as MLflow's table artifact holds them (pandas' orient="split"): the shape
    ``mlflow.load_table`` and the UI's table view read."""
    names = list(rows[0]) if rows else []
    return {"columns": names, "data": [[row[c] for c in names] for row in rows]}


def evaluation_markdown(metrics: dict[str, Any]) -> str:
    """The evaluation tables as the trainer prints them."""
    calibration = "\n".join(
        f"- {h}: T={c['temperature']:.3f}, ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
        for h, c in metrics["calibration"].items()
    )
    return "\n\n".join(
        [
            "## Test sets",
            report.summary_table(metrics["results"]),
            "## Per source",
            report.source_table(metrics["results"]),
            "## Calibration (validation)",
            calibration,
        ]
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
