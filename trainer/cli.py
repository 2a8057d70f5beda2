"""``support-trainer``: build data, train, evaluate and export the routing model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from schemas import PACKAGE_VERSION
from trainer.data import clinc
from trainer.data.splits import DataSpec
from trainer.errors import TrainerError

EXIT_FAILURE = 1


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
        "--data-dir", type=Path,
        help="train/val[/test_noisy/test_clean] .jsonl or .csv (build-data's, or your own)",
    )  # fmt: skip
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
        "--no-aux-source-intent", action="store_true",
        help="ablation: no training-only head over the source intents",
    )  # fmt: skip
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--threads", type=int, help="torch CPU threads")
    tr.set_defaults(handler=_train)

    ev = commands.add_parser("evaluate", help="score an artifact on labelled JSONL/CSV files")
    ev.add_argument("--model", type=Path, required=True)
    ev.add_argument("--data", type=Path, action="append", required=True,
                    help="labelled file; repeat to compare (e.g. noisy and clean)")  # fmt: skip
    ev.add_argument("--json", type=Path, help="also write the metrics JSON here")
    ev.add_argument("--out", type=Path, help="report dir (default: <model>/eval)")
    ev.add_argument("--skip-invalid", action="store_true")
    ev.add_argument(
        "--quantize", choices=["none", "int8"], default="none",
        help="score the int8 dynamically quantized model (the worker's setting)",
    )  # fmt: skip
    ev.set_defaults(handler=_evaluate)

    pr = commands.add_parser("predict", help="labels and calibrated confidences for texts")
    pr.add_argument("--model", type=Path, required=True)
    pr.add_argument("texts", nargs="+")
    pr.set_defaults(handler=_predict)
    return parser


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=["clinc", "hub", "synthetic"])
    p.add_argument(
        "--clinc-path", type=Path, help="data_oos_plus.json (default $CLINC_PATH or ../shared)"
    )
    p.add_argument("--mapping", help="support | seed | a JSON/YAML file")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="rows per split (demos)")
    p.add_argument("--synthetic-per-intent", type=int)


def _spec(args: argparse.Namespace, base: DataSpec | None = None) -> DataSpec:
    spec = base if base is not None else DataSpec()
    changes = {
        "source": args.source, "mapping": args.mapping, "seed": args.seed, "limit": args.limit,
        "synthetic_per_intent": args.synthetic_per_intent, "clinc_path": args.clinc_path,
    }  # fmt: skip
    spec = replace(spec, **{k: v for k, v in changes.items() if v is not None})
    if spec.source == "clinc" and spec.clinc_path is None:
        spec = replace(spec, clinc_path=clinc.default_path())
    return spec


def _build_data(args: argparse.Namespace) -> int:
    from trainer.data import splits

    spec = _spec(args)
    summary = splits.write(splits.build(spec), args.out)
    print(splits.format_stats(summary))
    print(f"fingerprint {summary['fingerprint']}\nwrote {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from trainer import evaluation, pipeline
    from trainer.presets import PRESETS

    if args.preset not in PRESETS:
        raise TrainerError(f"unknown preset {args.preset!r}; expected {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    spec = _spec(args, preset.data)
    cfg = pipeline.with_overrides(
        preset.train, base_model=args.base_model, pooling=args.pooling, epochs=args.epochs,
        lr=args.lr, batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
        device=args.device, threads=args.threads,
        casing_marker=False if args.no_casing_marker else None,
        class_weighting=True if args.class_weighting else None,
        aux_source_intent=False if args.no_aux_source_intent else None,
    )  # fmt: skip
    data, origin = pipeline.load_or_build(spec, args.data_dir, skip_invalid=args.skip_invalid)
    print(f"preset {args.preset}: {preset.about}\ndata {origin}: "
          + ", ".join(f"{k}={len(v)}" for k, v in data.items()), flush=True)  # fmt: skip
    metrics = pipeline.run(
        data, cfg, args.out, preset=args.preset, data_source=origin, name=args.name
    )
    print(evaluation.summary_table(metrics["results"]))
    for head, c in metrics["calibration"].items():
        print(
            f"calibration {head}: T={c['temperature']:.3f} "
            f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
        )
    print(f"artifact {args.out} (report: {args.out / 'report' / 'report.md'})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from trainer import evaluation
    from trainer.artifact import load_artifact
    from trainer.data.records import read_labelled

    loaded = load_artifact(args.model)
    if args.quantize == "int8":
        import torch

        from trainer.modeling import quantize_int8

        loaded.model = quantize_int8(loaded.model, torch.device("cpu"))
    results, failures, skipped = [], {}, {}
    first = None
    for path in args.data:
        examples, skipped[path.name] = read_labelled(path, skip_invalid=args.skip_invalid)
        first = first or examples
        probs = evaluation.probabilities(loaded, examples)
        results.append(evaluation.score(examples, probs, path.stem))
        failures[path.stem] = evaluation.failures(examples, probs)
    assert first is not None
    results.append(evaluation.random_baseline(first))
    extra = {"latency": evaluation.latency(loaded, evaluation.random_texts(first, 64)),
             "skipped_invalid_lines": skipped, "failures": failures}  # fmt: skip
    out = args.out or args.model / "eval"
    evaluation.write_report(
        out, results, extra, f"{loaded.manifest.name} {loaded.manifest.version}"
    )
    print(evaluation.summary_table(results))
    if any(skipped.values()):
        print("skipped invalid lines: " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
    if args.json:
        args.json.write_text(json.dumps({"results": results, **extra}, indent=2) + "\n")
    print(f"report {out / 'report.md'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from schemas.labels import HEADS
    from trainer import evaluation
    from trainer.artifact import load_artifact
    from trainer.data.records import Example

    loaded = load_artifact(args.model)
    examples = [Example(t, None, None, None, None) for t in args.texts]
    probs = evaluation.probabilities(loaded, examples)
    for i, text in enumerate(args.texts):
        out: dict[str, object] = {"text": text}
        for head, labels in HEADS.items():
            k = int(probs[head][i].argmax())
            out[head] = {"label": labels[k], "confidence": round(float(probs[head][i][k]), 4)}
        out["action"] = dict(out["action"])  # type: ignore[call-overload]
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
    except TrainerError as exc:
        print(f"support-trainer: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
