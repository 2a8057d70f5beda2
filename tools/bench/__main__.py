"""``python -m tools.bench``: throughput and latency, side by side in one run.

Run from the repo root. ``--source kafka`` (the default) needs a broker:
KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092 (``make kafka-up``); ``--source memory``
needs none.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Throughput and latency, side by side in one run (tools/bench/__init__.py).",
    )
    p.add_argument("--model", type=Path, default=Path("models/current"))
    p.add_argument(
        "--source",
        choices=["kafka", "memory"],
        default="kafka",
        help="memory: no broker (the GPU machine)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shorter runs (D 4 s, F 30,000 messages), still 3 repeats; 8-9 min on 2 cores",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--max-wait-ms", type=float, default=25.0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="the precision of the torch baseline, padded and padding-free: the variants "
        "torch-fp32, -bf16, -fp16 (auto: the device's default, worker.model.variants)",
    )
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, help="runs per figure (median and spread); default 3")
    p.add_argument(
        "--profile-ops",
        action="store_true",
        help="only print torch.profiler's operator table per variant",
    )
    p.add_argument(
        "--bucketing",
        action="store_true",
        help="only compare, per ONNX variant, length-bucketed sub-batches with one padded batch",
    )
    p.add_argument(
        "--shapes",
        metavar="VARIANT",
        help="only time VARIANT on message sets of unseen shapes, then on one again: "
        "widths as they come, rounded up to 4, and rounded after autotune.settle",
    )
    p.add_argument(
        "--profile-worker",
        metavar="VARIANT",
        help="only profile one worker serving VARIANT on the broker: CPU, context switches "
        "and page faults per thread, and its forward pass against the variant's alone",
    )
    p.add_argument(
        "--omp-pools",
        metavar="VARIANT",
        help="only time VARIANT's forward pass on one thread, on the main thread, and "
        "warmed on the main thread but run on another (worker/model_thread.py)",
    )
    p.add_argument(
        "--batch-sweep",
        metavar="SIZES",
        type=_sizes,
        help="only time the model alone (C), padded and padding-free at --dtype, at each "
        "batch size, e.g. 64,256,512, each with a token budget of 32 per message "
        "(tools/bench/sweep.py)",
    )
    p.add_argument(
        "--txn-backoff",
        action="store_true",
        help="only time the bare loop's back-to-back transactions at retry.backoff.ms 100, "
        "20 and the worker's (worker.kafka.clients.TXN_RETRY_BACKOFF_MS); needs the broker",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("FIRST", "SECOND"),
        help="only compare two JSON reports' figures: do two runs agree?",
    )
    p.add_argument("--json", type=Path, help="write the JSON report here")
    return p


def _sizes(text: str) -> list[int]:
    from tools.bench.sweep import parse_sizes

    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing, so that --help does not load torch.
    from tools.bench import model, report, run
    from worker.runtime import logs

    logs.configure("warning")  # a line per batch would drown the figures
    if args.profile_ops:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        for variant in (run.PACKED, *run.CPU_FAST):
            classifier = variant.classifier(args.model, args.device, args.dtype)
            texts = [ex.text for ex in model.message_set(1000 if args.quick else 3000)[0]]
            print(f"## {variant.name} ({classifier.precision}), batch {args.batch_size}")
            print(model.profile_ops(classifier, texts, args.batch_size))
        return 0
    if args.profile_worker or args.omp_pools:
        import os

        from tools.bench import profile

        if args.omp_pools:
            print(profile.omp_pools(args.model, args.omp_pools, args.batch_size))
            return 0
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
        n = 5000 if args.quick else 15000
        print(
            profile.profile_worker(bootstrap, args.model, args.profile_worker, n, args.batch_size)
        )
        return 0
    if args.batch_sweep:
        from tools.bench import sweep

        result = sweep.main(args)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(sweep.table(result["rows"]))
        return 0
    if args.shapes:
        print(run.shapes(args, args.shapes))
        return 0
    if args.compare:
        from tools.bench.figures import compare

        first, second = (json.loads(path.read_text()) for path in args.compare)
        print(compare(first, second))
        return 0
    if args.txn_backoff:
        import os

        from tools.bench.broker import txn_backoff

        texts = [ex.text for ex in model.message_set(1000)[0]] * (5 if args.quick else 10)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
        print(txn_backoff(bootstrap, texts, args.batch_size))
        return 0
    if args.bucketing:
        print(run.bucketing(args))
        return 0
    result = run.run(args)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    print(report.markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
