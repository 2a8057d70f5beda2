"""``support-worker score`` on a large file: messages per second, end to end.

Writes ``--lines`` inbound messages (the bench's message set: CLINC test texts after the
labels.md augmentation, cycled) as JSON lines, then runs the command ``--repeats`` times
as a user would (a process each, model load included) and prints each run's summary,
the median rate of the scoring itself and the median wall time, beside the CPU's flags.

    .venv/bin/python -m tools.bench.score --model runs/demo-variants --lines 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tools.bench.model import message_set
from tools.bench.run import cpu


def write_inbound(path: Path, n: int) -> str:
    """n inbound messages, one JSON line each; returns where their texts came from."""
    examples, source = message_set(n)
    with path.open("wb") as f:
        for i, ex in enumerate(examples):
            line = {"message_id": f"m{i}", "conversation_id": f"c{i % 997}", "text": ex.text}
            f.write(orjson.dumps(line) + b"\n")
    return source


def run_once(model: Path, src: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "worker.cli", "score", "--model", str(model)]
    argv += ["--in", str(src), "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"score failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    summary["wall_s"] = round(wall, 2)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.score", description=__doc__)
    p.add_argument("--model", type=Path, default=Path("models/current"))
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variant", help="SUPPORT_WORKER_MODEL__VARIANT (default: the settings')")
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.variant:
        env["SUPPORT_WORKER_MODEL__VARIANT"] = args.variant
    with tempfile.TemporaryDirectory(prefix="score-bench-") as tmp:
        src, out = Path(tmp) / "inbound.jsonl", Path(tmp) / "routed.jsonl"
        source = write_inbound(src, args.lines)
        runs = [run_once(args.model, src, out, env) for _ in range(args.repeats)]
    for r in runs:
        print(json.dumps(r))
    report = {
        "lines": args.lines,
        "texts": source,
        "variant": sorted({r["variant"] for r in runs}),
        "msg_per_s_median": statistics.median(r["msg_per_s"] for r in runs),
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "cpu": cpu(),
        "cores": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
