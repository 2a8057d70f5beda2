"""``support-trainer``: build data, train, evaluate and export the routing model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from schemas import PACKAGE_VERSION
from schemas.artifact import ModelVariant, UnscoredVariant
from trainer.data import banking77, clinc
from trainer.data.splits import SUBSETS, DataSpec, Source
from trainer.errors import TrainerError
from trainer.feedback.cli import add_commands as add_feedback_commands
from trainer.tracking import options as tracking_options
from worker.model.errors import ArtifactError

if TYPE_CHECKING:
    from trainer.presets import Preset  # imported lazily: it pulls in torch

EXIT_FAILURE = 1
# What pyproject's `train` extra brings that a worker's install lacks (training, export,
# quantization, the plots): a command that imports one says which extra to install.
TRAIN_EXTRA_MODULES = frozenset({"accelerate", "nncf", "onnx", "matplotlib"})
# `compare`: the candidate does not pass the promotion rule (trainer/compare.py); 0 = promote.
EXIT_REJECTED = 3
DEFAULT_PRESET = "full"


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
    tr.add_argument("--preset", help=f"smoke | demo | full (default {DEFAULT_PRESET})")
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
    tr.add_argument(
        "--from",
        dest="from_artifact",
        type=Path,
        metavar="ARTIFACT",
        help="warm-start from this artifact and fine-tune it on --feedback mixed with a replay "
        "sample of its own data (its preset, collections and seed, from its manifest; the data "
        "flags override); the child's manifest names it in 'lineage'",
    )
    tracking_options.add_arguments(tr)
    tr.add_argument(
        "--feedback",
        type=Path,
        metavar="DIR",
        help="with --from: the agents' corrections (DIR/dataset.jsonl, DIR/manifest.json)",
    )
    tr.add_argument(
        "--replay",
        type=int,
        metavar="N",
        help="with --from: train rows of the parent's data to mix in, stratified by source "
        "intent (default 2000; a quarter as many validation rows)",
    )
    tr.add_argument(
        "--feedback-repeats",
        type=int,
        metavar="K",
        help="with --from: train on each correction K times an epoch (default: about as "
        "many rows as the replay sample, at most 8)",
    )
    _holdout_arg(
        tr,
        "with --from: the newest share of the feedback, by time, never trained "
        "on (compare scores on it; default 0.2)",
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
        "--variant",
        default="torch-fp32",
        choices=[*get_args(ModelVariant), *get_args(UnscoredVariant)],
        metavar="VARIANT",
        help="score the model run as this variant (MODEL__VARIANT's names, e.g. torch-int8; "
        "worker.model.variants), default torch-fp32",
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

    cm = commands.add_parser(
        "compare",
        help="score the serving model and a candidate on the newest feedback (held back from "
        "fine-tuning) and on fixed test sets; exit 0: promote, 3: reject",
    )
    _data_args(cm)
    cm.add_argument("--current", type=Path, required=True, help="the serving artifact")
    cm.add_argument("--candidate", type=Path, required=True, help="the artifact to judge")
    cm.add_argument("--feedback", type=Path, required=True, metavar="DIR", help="as for train")
    _holdout_arg(
        cm,
        "the newest share of the feedback to score on (default: the share the "
        "candidate's lineage records, else 0.2)",
    )
    cm.add_argument(
        "--data",
        type=Path,
        action="append",
        help="labelled JSONL/CSV fixed sets instead of the test parts of the collections the "
        "current model trained on; repeatable",
    )
    cm.add_argument("--skip-invalid", action="store_true")
    cm.add_argument("--json", type=Path, help="also write the scores and the verdict here")
    cm.add_argument("--threads", type=int, help="torch CPU threads")
    cm.set_defaults(handler=_compare)

    pm = commands.add_parser(
        "promote",
        help="point DIR/current at an artifact (copied to DIR/<version>/) or at a version "
        "already in DIR (a rollback); logged to DIR/promotions.jsonl",
    )
    pm.add_argument("--models", type=Path, required=True, metavar="DIR")
    pm.add_argument("target", metavar="ARTIFACT_OR_VERSION")
    pm.set_defaults(handler=_promote)

    ms = commands.add_parser("models", help="list the versions in DIR and which is current")
    ms.add_argument("--models", type=Path, required=True, metavar="DIR")
    ms.set_defaults(handler=_models)

    pr = commands.add_parser(
        "predict", help="route texts as the worker does: route, labels, confidences"
    )
    pr.add_argument("--model", type=Path, required=True)
    pr.add_argument("texts", nargs="+")
    pr.set_defaults(handler=_predict)

    add_feedback_commands(commands)
    return parser


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _holdout_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    """train --from and compare cut the feedback at the same share (corrections.split_by_time)."""
    p.add_argument("--holdout-share", type=float, metavar="SHARE", help=help_text)


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
        "--clinc-path",
        type=Path,
        help="data_oos_plus.json (default $CLINC_PATH, else trainer/data/sets/clinc150/)",
    )
    p.add_argument(
        "--banking77-path",
        type=Path,
        help="train.csv (default $BANKING77_PATH, else trainer/data/sets/banking77/)",
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
    from trainer import build
    from trainer.tracking import summary

    if args.from_artifact is not None:
        return _finetune(args)
    for flag, value in (
        ("--feedback", args.feedback),
        ("--replay", args.replay),
        ("--feedback-repeats", args.feedback_repeats),
        ("--holdout-share", args.holdout_share),
    ):
        if value is not None:
            raise TrainerError(f"{flag} needs --from ARTIFACT")
    preset_name = args.preset or DEFAULT_PRESET
    preset = _preset(preset_name)
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
    with tracking_options.reporters(args) as reporter:
        data, origin, sources = build.load_or_build(
            spec, args.data_dir, skip_invalid=args.skip_invalid
        )
        print(
            f"preset {preset_name}: {preset.about}\ndata {origin}: "
            + ", ".join(f"{k}={len(v)}" for k, v in data.items()),
            flush=True,
        )
        reporter.params(
            summary.run_params(cfg, data, preset=preset_name, data_source=origin, sources=sources)
        )
        metrics = build.run(
            data,
            cfg,
            args.out,
            preset=preset_name,
            data_source=origin,
            sources=sources,
            name=args.name,
            on_epoch=reporter.epoch,
        )
        variants = (
            args.variants if args.variants is not None else preset_name in VARIANTS_BY_DEFAULT
        )
        _print_trained(args.out, metrics, data if variants else None)
        reporter.finish(args.out, metrics)
    return 0


def _print_trained(
    out: Path, metrics: dict[str, Any], variants_data: dict[str, list[Any]] | None
) -> None:
    """The tables of a freshly exported artifact; its variants made and scored when given
    the data to calibrate and score them on."""
    from trainer import report

    print(report.summary_table(metrics["results"]))
    print(report.source_table(metrics["results"]))
    for head, c in metrics["calibration"].items():
        print(
            f"calibration {head}: T={c['temperature']:.3f} "
            f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
        )
    if variants_data is not None:
        from trainer import variants

        print(variants.table(variants.make(out, variants_data)))
    print(f"artifact {out} (report: {out / 'report' / 'report.md'})")


# Flags that fix a model's architecture: a fine-tune keeps its parent's.
PARENT_FIXES = {
    "preset": "--preset",
    "base_model": "--base-model",
    "pooling": "--pooling",
    "max_length": "--max-length",
    "no_casing_marker": "--no-casing-marker",
    "no_aux_source_intent": "--no-aux-source-intent",
}


def _finetune(args: argparse.Namespace) -> int:
    """train --from: warm-start, fine-tune on feedback + replay, recalibrate, export."""
    import time

    started = time.monotonic()
    given = [flag for dest, flag in PARENT_FIXES.items() if getattr(args, dest)]
    if given:
        raise TrainerError(f"{', '.join(given)}: a fine-tune keeps its parent's (--from)")
    if args.feedback is None:
        raise TrainerError("--from needs --feedback DIR (the agents' corrections)")

    from trainer import build, finetune
    from trainer.data import corrections
    from trainer.data.replay import REPLAY_ROWS
    from trainer.tracking import summary
    from worker.model.artifact import read_manifest

    parent = read_manifest(args.from_artifact)
    feedback, skipped = corrections.read(args.feedback, skip_invalid=args.skip_invalid)
    parent_data, origin = _parent_data(args, parent)
    cfg = build.with_overrides(
        finetune.config_for(parent),
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        class_weighting=True if args.class_weighting else None,
        layer_decay=args.layer_decay,
        ood_quantile=args.ood_quantile,
    )
    share = corrections.HOLDOUT_SHARE if args.holdout_share is None else args.holdout_share
    replay_rows = REPLAY_ROWS if args.replay is None else args.replay
    m = finetune.mix(
        feedback,
        parent_data,
        holdout_share=share,
        replay_rows=replay_rows,
        seed=cfg.seed,
        repeats=args.feedback_repeats,
    )
    print(
        f"parent {parent.name} {parent.version}; data {origin}\n"
        f"feedback {feedback.path} ({feedback.fingerprint[:16]}): {len(feedback.rows)} "
        f"corrections{f', {skipped} invalid lines skipped' if skipped else ''}; "
        f"{len(m.feedback_train)} to train on (x{m.feedback_repeats} an epoch), "
        f"{len(m.feedback_validation)} to validate on, "
        f"the newest {len(m.held_back)} held back; replay {m.replay_train} train and "
        f"{m.replay_validation} validation rows",
        flush=True,
    )
    with tracking_options.reporters(args) as reporter:
        training = parent.training
        params = summary.run_params(
            cfg,
            m.data,
            preset=training.preset,
            data_source=origin,
            sources=tuple(training.sources),
        )
        reporter.params(
            params
            | {
                "parent": f"{parent.name} {parent.version}",
                "feedback.fingerprint": feedback.fingerprint,
                "feedback.train_rows": str(len(m.feedback_train)),
                "feedback.held_back_rows": str(len(m.held_back)),
            }
        )
        metrics = finetune.run(
            args.from_artifact,
            feedback,
            m,
            cfg,
            args.out,
            holdout_share=share,
            name=args.name,
            on_epoch=reporter.epoch,
        )
        variants = args.variants if args.variants is not None else parent.variants is not None
        _print_trained(args.out, metrics, m.data if variants else None)
        reporter.finish(args.out, metrics)
    print(f"wall time {time.monotonic() - started:.1f}s", flush=True)
    return 0


def _parent_data(args: argparse.Namespace, manifest: Any) -> tuple[dict[str, list[Any]], str]:
    """The splits a model was trained on, rebuilt from its manifest (its split files, or
    its preset's spec for its collections and seed); the data flags override."""
    from trainer import build
    from trainer.data import replay

    files = args.data_dir if getattr(args, "data_dir", None) else replay.files_of(manifest.training)
    if files is not None:
        spec = DataSpec()
    else:
        spec = _spec(
            args, replay.spec_of(manifest.training, _preset(manifest.training.preset).data)
        )
    data, origin, _ = build.load_or_build(spec, files, skip_invalid=args.skip_invalid)
    return data, origin


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
        classifier = evaluation.runtime(loaded, args.variant)
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
    """Each text routed as the worker routes it (``worker.router``): its route, labels and
    calibrated confidences, and how unfamiliar it is."""
    import logging

    import structlog

    from worker.router import Router
    from worker.settings import WorkerSettings

    if not structlog.is_configured():  # the worker's log lines: stderr, only warnings
        structlog.configure(
            # sys.stderr as it is when a line is written, not when this ran
            logger_factory=lambda *_: structlog.WriteLogger(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        )
    router = Router.load(args.model, WorkerSettings())
    threshold = router.policy.max_unfamiliarity
    for text, routed in zip(args.texts, router.route(args.texts), strict=True):
        out: dict[str, object] = {"text": text}
        result = routed.result
        if result is None:  # a dead letter: the worker could not route it
            out["dead_letter"] = routed.value["headers"].get("x-error-message")
            print(json.dumps(out, ensure_ascii=False, default=str))
            continue
        out["route"], out["reason"] = result.route, result.routing.reason
        for head, p in (result.predictions or {}).items():
            out[head] = {"label": p.label, "confidence": round(p.confidence, 4)}
        score = result.routing.unfamiliarity
        out["unfamiliarity"] = {
            "score": None if score is None else round(score, 4),
            "threshold": None if threshold is None else round(threshold, 4),
            "unfamiliar": score is not None and threshold is not None and score > threshold,
        }
        print(json.dumps(out, ensure_ascii=False))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Both models on the held-back feedback and the fixed sets; the promotion rule's
    verdict as the exit code (0 promote, EXIT_REJECTED reject)."""
    from datetime import datetime

    import torch

    from trainer import build, compare, scorecard
    from trainer.data import corrections

    if args.threads:
        torch.set_num_threads(args.threads)
    current, candidate = scorecard.load(args.current), scorecard.load(args.candidate)
    feedback, skipped = corrections.read(args.feedback, skip_invalid=args.skip_invalid)
    lineage = candidate.loaded.manifest.lineage
    share = args.holdout_share
    if share is None:
        share = lineage.feedback.holdout_share if lineage else corrections.HOLDOUT_SHARE
    held = corrections.split_by_time(feedback.rows, share).held_back
    print(f"current   {current.title}\ncandidate {candidate.title}")
    if lineage:
        print(f"candidate fine-tuned from {lineage.parent.name} {lineage.parent.version}")
        if lineage.parent.content_hash != current.loaded.content_hash:
            print("note: not from the current model; the verdict still compares the two")
    since = f", corrected from {held[0].at.isoformat()}" if held else ""
    print(
        f"feedback {feedback.path} ({feedback.fingerprint[:16]}): the newest {len(held)} of "
        f"{len(feedback.rows)} corrections (share {share}{since})"
        + (f"; {skipped} invalid lines skipped" if skipped else "")
    )
    if lineage and lineage.feedback.fingerprint != feedback.fingerprint:
        # Another data set than the candidate learned from: its held-back part may hold
        # rows the candidate trained on; only those after its last one are unseen.
        until = lineage.feedback.trained_until
        unseen = [c for c in held if until is None or c.at > datetime.fromisoformat(until)]
        print(
            f"note: the candidate learned from feedback {lineage.feedback.fingerprint[:16]}; "
            f"scoring the {len(unseen)} held-back corrections newer than {until}"
        )
        held = unseen
    if args.data:
        fixed = _test_sets(args)
    else:
        data, origin = _parent_data(args, current.loaded.manifest)
        fixed = {name: data[name] for name in build.TEST_SPLITS if data.get(name)}
        print(f"fixed sets: the test parts of {origin}" if fixed else f"no test parts in {origin}")
    pairs = scorecard.pairs(
        current,
        candidate,
        {"recent traffic": [c.given for c in held]},
        "recent",
        per_collection=False,
    )
    pairs += scorecard.pairs(current, candidate, fixed, "fixed")
    verdict = compare.decide(pairs)
    print("\n" + scorecard.table(pairs) + "\n")
    print(scorecard.verdict_line(verdict, EXIT_REJECTED))
    if args.json:
        payload = scorecard.to_json(current, candidate, pairs, verdict)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if verdict.promote else EXIT_REJECTED


def _promote(args: argparse.Namespace) -> int:
    from trainer import registry

    done = registry.promote(args.models, args.target)
    if not done.changed:
        print(f"{done.current} is already current in {args.models}")
        return 0
    copied = f" (copied to {args.models / done.current})" if done.copied else ""
    print(f"current: {done.previous or 'none'} -> {done.current}{copied}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from trainer import registry

    entries = registry.versions(args.models)
    print(registry.listing(entries))
    serving = registry.current(args.models)
    if serving is None:
        print("no current version (support-trainer promote sets one)")
    elif serving not in {v.version for v in entries}:
        print(f"current -> {serving}, which is missing")
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
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        print(
            f"support-trainer {args.command}: needs {exc.name}, from the train extra: "
            "pip install 'support-router[train]'",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
