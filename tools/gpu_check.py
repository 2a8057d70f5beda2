"""``python -m tools.gpu_check`` (``make gpu-check``): the GPU check, one script that runs
in under 7 minutes on a lent H100 and writes one JSON file that docs/benchmarks.md quotes.

Stages, each recorded with its wall time, and its error instead of its figures when it
fails (the stages after it still run):

classify  one message through ``support-worker classify`` (the worker's intake,
          inference and routing) on ``--device``, at the dtype the worker serves there.
sweep     model-only msg/s, C of tools/bench (forward passes on batches laid out in
          advance, ``torch.cuda.synchronize`` after each), for each dtype (float32,
          bfloat16, and float16 on CUDA), padded and padding-free, over the batch sweep;
          each figure the median of repeats with its min and max
          (tools/bench/sweep.py). A row that fails records its error.
pipeline  the worker's pipeline without Kafka (tools/bench/memory.py: decode, batch,
          tokenize, infer, route, serialize) at the largest batch size within 5% of the
          fastest, padding-free, in the dtype the worker serves on this device.
null      that pipeline with the null model (``model.variant=null``): the ceiling of
          everything around the model.

Every stage is bounded in time (``Plan``), so the whole check ends within ``budget_s``.
Exit status 1 when anything failed, after the JSON is written. On a device machine it
runs from source; tools/gpu_pack.py builds what travels and prints the command.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEXT = "WTF my card was declined AGAIN!!"  # the README's classify example


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much each stage runs on a device, and the time it may take."""

    sizes: tuple[int, ...]
    dtypes: tuple[str, ...]
    sweep_messages: int
    repeats: int
    row_seconds: float  # a sweep row stops repeating after this (two runs at least)
    pipeline_messages: int
    pipeline_seconds: float  # each of pipeline and null
    budget_s: float  # the sweep stops starting rows when only the later stages' time is left


PLANS = {
    # Sized before any GPU run: a MiniLM batch of 1,024 should take milliseconds on an H100,
    # so a pass over 16,384 messages is a fraction of a second and each row repeats within
    # its 3 s; the pipeline is bound by the host's work per message, tens of µs, so 20,000
    # messages take a second or two. 24 rows and both pipelines: about 2 minutes.
    "cuda": Plan(
        sizes=(64, 256, 512, 1024),
        dtypes=("float32", "bfloat16", "float16"),
        sweep_messages=16_384,
        repeats=5,
        row_seconds=3.0,
        pipeline_messages=20_000,
        pipeline_seconds=30.0,
        budget_s=360.0,
    ),
    # fp16 is left out on a CPU: no CPU kernel is fast at it.
    "cpu": Plan(
        sizes=(16, 64, 256),
        dtypes=("float32", "bfloat16"),
        sweep_messages=2000,
        repeats=3,
        row_seconds=3.0,
        pipeline_messages=2000,
        pipeline_seconds=30.0,
        budget_s=600.0,
    ),
}
QUICK = {
    "cuda": Plan(
        sizes=(64, 512),
        dtypes=("float32", "bfloat16"),
        sweep_messages=2048,
        repeats=3,
        row_seconds=1.0,
        pipeline_messages=5000,
        pipeline_seconds=10.0,
        budget_s=120.0,
    ),
    # The tiny smoke model on 2 cores: the whole check in well under a minute.
    "cpu": Plan(
        sizes=(16, 64),
        dtypes=("float32", "bfloat16"),
        sweep_messages=512,
        repeats=3,
        row_seconds=1.0,
        pipeline_messages=512,
        pipeline_seconds=5.0,
        budget_s=150.0,
    ),
}


def plan_for(device: str, quick: bool, sizes: str | None, dtypes: str | None) -> Plan:
    from tools.bench.sweep import parse_sizes

    plan = (QUICK if quick else PLANS)["cuda" if device.startswith("cuda") else "cpu"]
    if sizes:
        plan = dataclasses.replace(plan, sizes=tuple(parse_sizes(sizes)))
    if dtypes:
        plan = dataclasses.replace(plan, dtypes=tuple(d for d in dtypes.split(",") if d))
    return plan


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """The worker's settings come from the environment: set these, then put back."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def machine(device: str) -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    from tools.bench.run import cpu

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
        }
    return info


def describe_model(path: Path) -> dict[str, Any]:
    """What the check ran: the manifest's name and version, the encoder's shape, and
    where the copy came from (tools/gpu_pack.py's derived.json and pack.json)."""
    from worker.model.artifact import load_artifact

    loaded = load_artifact(path)
    config = loaded.manifest.backbone.config
    info: dict[str, Any] = {
        "path": str(path),
        **loaded.model_info,
        "model_type": loaded.manifest.backbone.model_type,
        "hidden_size": config.get("hidden_size", config.get("dim")),
        "layers": config.get("num_hidden_layers", config.get("n_layers")),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "max_length": loaded.manifest.max_length,
    }
    if (path / "derived.json").exists():
        info["derived"] = json.loads((path / "derived.json").read_text())
    if (path.parent / "pack.json").exists():  # the commit and the messages' source
        pack = json.loads((path.parent / "pack.json").read_text())
        info["pack"] = {k: v for k, v in pack.items() if k != "artifact"}  # that is "derived"
    return info


def load_texts(file: Path | None, n: int) -> tuple[list[str], dict[str, Any]]:
    """``n`` texts, cycling through ``file`` (tools/gpu_pack.py's messages.jsonl) or else
    the bench's message set (built from the vendored CLINC file)."""
    if file is not None:
        from trainer.data.records import read_labelled

        examples, _ = read_labelled(file)
        source = {"file": str(file)}
    else:
        from tools.bench.model import message_set

        examples, name = message_set(n)
        source = {"source": name}
    texts = [examples[i % len(examples)].text for i in range(n)]
    return texts, {**source, "distinct": len(examples)}


def classify(model: Path, device: str) -> dict[str, Any]:
    """``support-worker classify --model MODEL TEXT`` in this process, on ``device``."""
    from worker import cli

    out = io.StringIO()
    env = {"SUPPORT_WORKER_MODEL__DEVICE": device, "SUPPORT_WORKER_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    with environ(env), contextlib.redirect_stdout(out):
        code = cli.main(["classify", "--model", str(model), TEXT])
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"support-worker classify exited {code} (its stderr is above)")
    printed = json.loads(out.getvalue())
    value = printed["value"]
    return {
        "text": TEXT,
        "topic": printed["topic"],
        "route": value["route"],
        "reason": value["routing"]["reason"],
        "unfamiliarity": value["routing"]["unfamiliarity"],
        "labels": {
            h: [p["label"], round(p["confidence"], 4)] for h, p in value["predictions"].items()
        },
        "inference_ms": value["timing"]["inference_ms"],
        "load_and_classify_s": seconds,
    }


def worker_dtype(device: str) -> str:
    """The dtype the worker serves on ``device`` by default (``variants.torch_variant``'s
    for "auto": an artifact without a variant report)."""
    import torch

    from worker.model.classifier import DTYPES, resolve_dtype

    chosen = resolve_dtype("auto", torch.device(device))
    return next(name for name, dtype in DTYPES.items() if dtype == chosen)


def pipeline(
    model: Path,
    device: str,
    rows: Sequence[dict[str, Any]],
    texts: Sequence[str],
    plan: Plan,
    model_thread: ThreadPoolExecutor,
) -> dict[str, Any]:
    """The worker's pipeline, no Kafka, at the sweep's best padding-free batch limits in
    the worker's dtype (any dtype that ran, if that one did not)."""
    from tools.bench.memory import bench_memory
    from tools.bench.model import length_stats
    from tools.bench.run import PACKED
    from tools.bench.sweep import best, figure, repeat, token_budget
    from worker.settings import BatchingSettings

    dtype = worker_dtype(device)
    packed = [r for r in rows if r["layout"] == PACKED.name]
    chosen = best([r for r in packed if r["dtype"] == dtype]) or best(packed)
    if chosen is None:
        raise RuntimeError("no padding-free row of the sweep ran")
    size = chosen["batch_size"]
    batching = BatchingSettings(max_batch_size=size, max_batch_tokens=token_budget(size))
    clf = model_thread.submit(PACKED.classifier, model, device, chosen["dtype"]).result()
    model_thread.submit(clf.warmup, size).result()
    runs = repeat(
        lambda: bench_memory(clf, texts, batching, model_thread),
        plan.repeats,
        plan.pipeline_seconds,
    )
    speed = figure(runs)
    model_only = chosen["msgs_per_s"]["median"]
    return {
        "dtype": chosen["dtype"],
        "precision": clf.precision,
        "batching": batching.model_dump(),
        "messages": len(texts),
        "tokens": length_stats(clf, texts),
        "msgs_per_s": speed,
        "model_only_msgs_per_s": model_only,
        "over_model_only": speed["median"] / model_only,
    }


def null_ceiling(
    batching: dict[str, Any], texts: Sequence[str], plan: Plan, model_thread: ThreadPoolExecutor
) -> dict[str, Any]:
    """The same pipeline with the null model, chosen the way the worker chooses it."""
    from tools.bench.memory import bench_memory
    from tools.bench.sweep import figure, repeat
    from worker.serving import load_classifier
    from worker.settings import BatchingSettings, ModelSettings, WorkerSettings

    null = load_classifier(WorkerSettings(model=ModelSettings(variant="null")))
    limits = BatchingSettings(**batching)
    runs = repeat(
        lambda: bench_memory(null, texts, limits, model_thread), plan.repeats, plan.pipeline_seconds
    )
    return {"batching": batching, "messages": len(texts), "msgs_per_s": figure(runs)}


def run_stage(report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """``fn``'s figures under ``report["stages"][name]``, or its error; with its wall time."""
    started = time.monotonic()
    try:
        entry = {"ok": True, **fn()}
    except Exception as exc:  # noqa: BLE001 - a failed stage is recorded; the next still runs
        from tools.bench.sweep import error_text

        traceback.print_exc()
        entry = {"ok": False, "error": error_text(exc)}
    entry["wall_s"] = round(time.monotonic() - started, 2)
    report["stages"][name] = entry
    print(f"{name}: {'ok' if entry['ok'] else entry['error']} ({entry['wall_s']:.1f} s)")


def summary(report: dict[str, Any]) -> str:
    """The compact table: the sweep, then a line per other stage."""
    from tools.bench.sweep import table

    s = report["stages"]
    lines = []
    gpu = report["machine"].get("gpu", {}).get("name") or report["machine"]["cpu"]["model"]
    lines.append(f"{report['model'].get('name', '?')} on {gpu}, torch {report['machine']['torch']}")
    if "rows" in s.get("sweep", {}):
        lines += ["", table(s["sweep"]["rows"])]
    if s.get("classify", {}).get("ok"):
        c = s["classify"]
        lines.append(f"\nclassify: {c['topic']} ({c['reason']}), {c['inference_ms']:.1f} ms")
    for name, title in (("pipeline", "pipeline, no Kafka"), ("null", "pipeline, null model")):
        stage = s.get(name, {})
        if stage.get("ok"):
            m, b = stage["msgs_per_s"], stage["batching"]
            lines.append(
                f"{title}: {m['median']:,.0f} msg/s ({m['min']:,.0f}-{m['max']:,.0f}), "
                f"batch {b['max_batch_size']} / {b['max_batch_tokens']} tokens"
            )
    lines.append(f"wall {report['check']['wall_s']:.0f} s, ok: {report['check']['ok']}")
    return "\n".join(lines)


def check(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    import torch

    from tools.bench import sweep
    from worker.model_thread import model_executor
    from worker.runtime import logs
    from worker.serving import pin_tokenizer_threads

    logs.configure("warning")  # a line per batch would drown the figures
    pin_tokenizer_threads()  # as the worker does
    plan = plan_for(args.device, args.quick, args.sizes, args.dtypes)
    report: dict[str, Any] = {
        "check": {
            "argv": sys.argv[1:],
            "device": args.device,
            "quick": args.quick,
            "plan": dataclasses.asdict(plan),
            "tokens_per_message": sweep.TOKENS_PER_MESSAGE,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "machine": machine(args.device),
        "model": describe_model(args.model),
        "stages": {},
    }
    file = args.messages
    if file is None and (args.model.parent / "messages.jsonl").exists():
        file = args.model.parent / "messages.jsonl"
    texts, report["messages"] = load_texts(file, max(plan.sweep_messages, plan.pipeline_messages))

    def save() -> None:
        report["check"]["wall_s"] = round(time.monotonic() - started, 1)
        stages = report["stages"].values()
        report["check"]["ok"] = bool(stages) and all(s["ok"] for s in stages)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    model_thread = model_executor()  # every model call on one thread, as in the worker
    # The sweep stops starting rows while the later stages' time is still left.
    sweep_stop = started + plan.budget_s - 2 * plan.pipeline_seconds - 30

    def sweep_stage() -> dict[str, Any]:
        result: dict[str, Any] = model_thread.submit(
            sweep.sweep,
            args.model,
            args.device,
            plan.dtypes,
            texts[: plan.sweep_messages],
            plan.sizes,
            plan.repeats,
            plan.row_seconds,
            sweep_stop,
        ).result()
        failed = [r for r in result["rows"] if "msgs_per_s" not in r]
        if failed:  # the figures that ran stay in the report beside the failures
            print(f"sweep: {len(failed)} of {len(result['rows'])} rows failed", file=sys.stderr)
        # Whether "float32" rows ran their matmuls in TF32 (the classifier's choice on CUDA).
        tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
        return {**result, "ok": not failed, "failed_rows": len(failed), "tf32_matmul": tf32}

    run_stage(report, "classify", lambda: classify(args.model, args.device))
    save()
    run_stage(report, "sweep", sweep_stage)
    save()
    rows = report["stages"]["sweep"].get("rows", [])
    texts = texts[: plan.pipeline_messages]
    run_stage(
        report,
        "pipeline",
        lambda: pipeline(args.model, args.device, rows, texts, plan, model_thread),
    )
    save()
    batching = report["stages"]["pipeline"].get("batching")

    def null_stage() -> dict[str, Any]:
        if batching is None:
            raise RuntimeError("the pipeline stage failed: no batch limits to run it at")
        out = null_ceiling(batching, texts, plan, model_thread)
        pipe = report["stages"]["pipeline"]["msgs_per_s"]["median"]
        return {**out, "pipeline_over_null": pipe / out["msgs_per_s"]["median"]}

    run_stage(report, "null", null_stage)
    model_thread.shutdown()
    save()
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.gpu_check", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--model", type=Path, default=Path(".gpu/artifact"), help="artifact dir")
    p.add_argument("--device", default="cuda", help="cuda (the check), or cpu (its test)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu-check.json"))
    p.add_argument("--quick", action="store_true", help="fewer sizes, messages and repeats")
    p.add_argument(
        "--messages",
        type=Path,
        help="labelled JSONL of texts; default: messages.jsonl beside --model (tools/gpu_pack.py), "
        "else the bench's message set",
    )
    p.add_argument("--sizes", help="batch sizes, e.g. 64,256,512 (default: the device's plan)")
    p.add_argument("--dtypes", help="e.g. float32,bfloat16 (default: the device's plan)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = check(args)
    print(summary(report))
    print(f"wrote {args.out}")
    return 0 if report["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
