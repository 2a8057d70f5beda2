"""``support-trainer``: build data, train, evaluate and export the routing model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas import PACKAGE_VERSION
from trainer.data import banking77, clinc
from trainer.data.splits import SUBSETS, DataSpec, Source
from trainer.errors import TrainerError
from worker.model.errors import ArtifactError

if TYPE_CHECKING:
    from trainer.presets import Preset  # imported lazily: it pulls in torch

EXIT_FAILURE = 1


# Presets whose training ends with `support-trainer variants`: the production one. The
# demo's wait stays short, and the tests' smoke artifacts get theirs where they need them.
VARIANTS_BY_DEFAULT = frozenset({"full"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="support-trainer",
        description="Build the data set, fine-tune, calibrate, evaluate and export the model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {PACKAGE_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("build-data", help="write train/val/test JSONL splits with stats")
    _data_args(data)
    data.add_argument("--out", type=Path, required=True, help="directory for the splits")
    data.set_defaults(handler=_build_data)

    tr = commands.add_parser("train", help="fine-tune, calibrate, evaluate and export an artifact")
    _data_args(tr)
    tr.add_argument("--preset", default="full", help="smoke | demo | full (default full)")
    tr.add_argument(
        "--data-dir",
        type=Path,
        help="train/val[/test_noisy/test_clean] .jsonl or .csv (build-data's, or your own)",
    )
    tr.add_argument("--skip-invalid", action="store_true", help="skip and count bad lines")
    tr.add_argument("--out", type=Path, required=True, help="artifact directory")
    tr.add_argument("--name", help="model name in the manifest")
    tr.add_argument("--base-model", help="auto | tiny | minilm | a local dir | a hub id")
    tr.add_argument("--pooling", choices=["cls", "mean"])
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--max-length", type=int)
    tr.add_argument("--no-casing-marker", action="store_true", help="ablation: no ALL CAPS token")
    tr.add_argument("--class-weighting", action="store_true", help="sqrt inverse-frequency weights")
    tr.add_argument(
        "--no-aux-source-intent",
        action="store_true",
        help="ablation: no training-only head over the source intents",
    )
    tr.add_argument(
        "--layer-decay",
        type=float,
        help="layer-wise lr decay (1.0 = none); lower layers keep more of the pretrained encoder",
    )
    tr.add_argument(
        "--ood-quantile",
        type=float,
        help="share of in-distribution validation messages the OOD threshold admits",
    )
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--threads", type=int, help="torch CPU threads")
    tr.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        help="export the ONNX and OpenVINO variants and score every variant on the noisy test "
        "(default: "
        "with the full preset only; support-trainer variants does it for any artifact later)",
    )
    tr.set_defaults(handler=_train)

    va = commands.add_parser(
        "variants",
        help="export an artifact's ONNX files (fp32, int8 dynamic, int8 static) and OpenVINO "
        "int8 IR (NNCF), and score every variant on the full noisy test into its manifest",
    )
    _data_args(va)
    va.add_argument("--model", type=Path, required=True, help="artifact dir (changed in place)")
    va.add_argument("--preset", default="full", help="whose data to score on: smoke | demo | full")
    va.add_argument("--data-dir", type=Path, help="as for train: the splits to use instead")
    va.add_argument("--skip-invalid", action="store_true")
    va.add_argument("--threads", type=int, help="torch CPU threads")
    va.set_defaults(handler=_variants)

    ev = commands.add_parser(
        "evaluate",
        help="score artifacts per source (the collections' test parts, or labelled files); "
        "print the transfer table and the most confident errors",
    )
    _data_args(ev)
    ev.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="artifact dir; repeat for one transfer-table row each",
    )
    ev.add_argument(
        "--data",
        type=Path,
        action="append",
        help="labelled JSONL/CSV instead of the built test parts; repeatable",
    )
    ev.add_argument("--json", type=Path, help="also write the metrics JSON here")
    ev.add_argument("--out", type=Path, help="report dir (default: <model>/eval)")
    ev.add_argument("--skip-invalid", action="store_true")
    ev.add_argument(
        "--quantize",
        choices=["none", "int8"],
        default="none",
        help="score the int8 dynamically quantized model (the worker's setting)",
    )
    ev.set_defaults(handler=_evaluate)

    co = commands.add_parser(
        "compare-encoders",
        help="frozen linear-probe transfer and throughput per encoder, before fine-tuning one",
    )
    _data_args(co)
    co.add_argument(
        "--base-model",
        action="append",
        required=True,
        help="minilm | a local dir | a hub id; repeat to compare",
    )
    co.set_defaults(handler=_compare_encoders)

    pr = commands.add_parser("predict", help="labels and calibrated confidences for texts")
    pr.add_argument("--model", type=Path, required=True)
    pr.add_argument("texts", nargs="+")
    pr.set_defaults(handler=_predict)
    return parser


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sources",
        "--source",
        type=_names,
        metavar="S[,S]",
        help="clinc, hub, banking77, synthetic, definitions; comma-separated "
        "(default: the preset's)",
    )
    p.add_argument(
        "--train-sources",
        type=_names,
        metavar="C[,C]",
        help="collections to train and validate on (clinc, banking77, definitions); tests "
        "cover all: a model trained on one is scored on the others (transfer)",
    )
    p.add_argument(
        "--clinc-path", type=Path, help="data_oos_plus.json (default $CLINC_PATH or ../shared)"
    )
    p.add_argument(
        "--banking77-path", type=Path, help="train.csv (default $BANKING77_PATH or ../shared)"
    )
    p.add_argument("--mapping", help="CLINC's: support | seed | a JSON/YAML file")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="rows per split (demos)")
    p.add_argument(
        "--subset",
        choices=SUBSETS,
        help="how --limit picks train rows: random, or balanced over the labels "
        "(default: the preset's)",
    )
    p.add_argument("--synthetic-per-intent", type=int)


def _spec(args: argparse.Namespace, base: DataSpec | None = None) -> DataSpec:
    spec = base if base is not None else DataSpec()
    changes = {
        "sources": args.sources,
        "train_sources": args.train_sources,
        "mapping": args.mapping,
        "seed": args.seed,
        "limit": args.limit,
        "subset": args.subset,
        "synthetic_per_intent": args.synthetic_per_intent,
        "clinc_path": args.clinc_path,
        "banking77_path": args.banking77_path,
    }
    spec = replace(spec, **{k: v for k, v in changes.items() if v is not None})
    if "clinc" in spec.sources and spec.clinc_path is None:
        spec = replace(spec, clinc_path=clinc.default_path())
    if "banking77" in spec.sources and spec.banking77_path is None:
        spec = replace(spec, banking77_path=banking77.default_path())
    return spec


def _build_data(args: argparse.Namespace) -> int:
    from trainer.data import splits

    spec = _spec(args)
    summary = splits.write(splits.build(spec), args.out)
    print(splits.format_stats(summary))
    print(f"fingerprint {summary['fingerprint']}\nwrote {args.out}")
    return 0


def _preset(name: str) -> Preset:
    from trainer.presets import PRESETS

    if name not in PRESETS:
        raise TrainerError(f"unknown preset {name!r}; expected {', '.join(PRESETS)}")
    return PRESETS[name]


def _train(args: argparse.Namespace) -> int:
    from trainer import build, report

    preset = _preset(args.preset)
    spec = _spec(args, preset.data)
    cfg = build.with_overrides(
        preset.train,
        base_model=args.base_model,
        pooling=args.pooling,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        casing_marker=False if args.no_casing_marker else None,
        class_weighting=True if args.class_weighting else None,
        aux_source_intent=False if args.no_aux_source_intent else None,
        layer_decay=args.layer_decay,
        ood_quantile=args.ood_quantile,
    )
    data, origin, sources = build.load_or_build(spec, args.data_dir, skip_invalid=args.skip_invalid)
    print(
        f"preset {args.preset}: {preset.about}\ndata {origin}: "
        + ", ".join(f"{k}={len(v)}" for k, v in data.items()),
        flush=True,
    )
    metrics = build.run(
        data,
        cfg,
        args.out,
        preset=args.preset,
        data_source=origin,
        sources=sources,
        name=args.name,
    )
    print(report.summary_table(metrics["results"]))
    print(report.source_table(metrics["results"]))
    for head, c in metrics["calibration"].items():
        print(
            f"calibration {head}: T={c['temperature']:.3f} "
            f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
        )
    if args.variants if args.variants is not None else args.preset in VARIANTS_BY_DEFAULT:
        from trainer import variants

        print(variants.table(variants.make(args.out, data)))
    print(f"artifact {args.out} (report: {args.out / 'report' / 'report.md'})")
    return 0


def _variants(args: argparse.Namespace) -> int:
    import torch

    from trainer import build, variants

    preset = _preset(args.preset)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = _spec(args, preset.data)
    data, origin, _ = build.load_or_build(spec, args.data_dir, skip_invalid=args.skip_invalid)
    print(f"data {origin}", flush=True)
    print(variants.table(variants.make(args.model, data)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from trainer import evaluation, report
    from worker.model.artifact import load_artifact

    test_sets = _test_sets(args)
    models: list[Any] = []
    payload: dict[str, Any] = {}
    for model_dir in args.model:
        loaded = load_artifact(model_dir)
        classifier = evaluation.runtime(loaded, quantize=args.quantize)
        results, failures = [], {}
        curves: dict[str, Any] = {}
        for split, examples in test_sets.items():
            scored = evaluation.evaluate_sources(classifier, examples, split)
            results += scored.results
            failures.update(scored.errors)
            curves = curves or scored.curves  # the first set's: the noisy test by default
        first = next(iter(test_sets.values()))
        results.append(evaluation.random_baseline(first))
        trained = ",".join(loaded.manifest.training.sources)
        label = f"{trained} ({model_dir.name})"
        models.append((label, [r for r in results if "routed" in r]))
        extra = {
            "latency": evaluation.latency(classifier, evaluation.random_texts(first, 64)),
            "failures": failures,
            "risk_coverage": curves,
        }
        out = (
            (args.out / model_dir.name if len(args.model) > 1 else args.out)
            if args.out
            else (model_dir / "eval")
        )
        title = f"{loaded.manifest.name} {loaded.manifest.version}"
        report.write_report(out, results, extra, title)
        payload[str(model_dir)] = {"results": results, **extra}
        print(f"# {title}, trained on {trained}\n")
        print(report.summary_table(results) + "\n")
        print(report.source_table(results) + "\n")
        validation = _validation(args, loaded.manifest.training.sources)
        if validation:
            rows = evaluation.operating_points(classifier, validation, first)
            payload[f"{model_dir}:operating_points"] = rows
            print(
                f"OOD operating points ({next(iter(test_sets))}; thresholds at quantiles of the "
                f"{len(validation)} validation messages of its training collections):\n"
            )
            print(report.operating_table(rows, loaded.manifest.ood.quantile) + "\n")
        noisy = {k: v for k, v in failures.items() if not k.endswith("test_clean")}
        print(report.format_failures(noisy))
        print(f"report {out / 'report.md'}\n")
    print("# transfer\n")
    print(report.transfer_table(models))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _validation(args: argparse.Namespace, trained: list[str]) -> list[Any]:
    """The validation part of the collections a model trained on, as the trainer built it
    (empty for collections this command cannot build, such as a user's files)."""
    from trainer.data import splits

    buildable: dict[str, Source] = {"clinc": "clinc", "banking77": "banking77"}
    known = tuple(buildable[c] for c in trained if c in buildable)
    if not known or len(known) < len([c for c in trained if c != "definitions"]):
        return []
    spec = _spec(args, DataSpec(sources=known))
    return splits.build(replace(spec, sources=known, train_sources=known))["val"]


def _test_sets(args: argparse.Namespace) -> dict[str, list[Any]]:
    """--data files (each its own set, collection = file name unless the rows say), or the
    test parts of --sources built as the trainer builds them."""
    from dataclasses import replace as with_fields

    from trainer.data import splits
    from trainer.data.records import read_labelled

    if args.data:
        sets = {}
        for path in args.data:
            examples, skipped = read_labelled(path, skip_invalid=args.skip_invalid)
            if skipped:
                print(f"{path}: skipped {skipped} invalid lines")
            sets[path.stem] = [
                ex if ex.collection else with_fields(ex, collection=path.stem) for ex in examples
            ]
        return sets
    spec = _spec(args, DataSpec(sources=("clinc", "banking77")))
    built = splits.build(spec)
    return {name: built[name] for name in ("test_noisy", "test_clean") if built.get(name)}


def _compare_encoders(args: argparse.Namespace) -> int:
    from trainer import probe
    from trainer.data import splits

    data = splits.build(_spec(args, DataSpec(sources=("clinc", "banking77"))))
    reports = []
    for name in args.base_model:
        reports.append(probe.compare(name, data))
        print(f"{name}: {reports[-1].msgs_per_s:.0f} msg/s", flush=True)
    print(probe.table(reports))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from schemas.labels import HEADS
    from trainer import evaluation
    from trainer.data.records import Example
    from worker.model.artifact import load_artifact

    loaded = load_artifact(args.model)
    examples = [Example(t, None, None, None, None) for t in args.texts]
    pred = evaluation.predict(evaluation.runtime(loaded), examples)
    threshold = loaded.manifest.ood.threshold
    for i, text in enumerate(args.texts):
        out: dict[str, object] = {"text": text}
        for head, labels in HEADS.items():
            k = int(pred.probs[head][i].argmax())
            out[head] = {"label": labels[k], "confidence": round(float(pred.probs[head][i][k]), 4)}
        score = float(pred.unfamiliarity[i])
        out["unfamiliarity"] = {
            "score": round(score, 4),
            "threshold": round(threshold, 4),
            "unfamiliar": score > threshold,
        }
        print(json.dumps(out, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        code: int = args.handler(args)
    except (TrainerError, ArtifactError) as exc:
        print(f"support-trainer: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
