"""The poison-and-fuzz chaos scenario: poison records and fuzz through the live worker
(each case on its own topics, canaries around it), and the in-process fuzz of the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.fuzz import expected_place, live_cases
from tests.chaos.report import Sent
from tests.chaos.scenarios.common import LATE_STAGES, Ctx, Run
from tests.chaos.workload import Feeder, Record, good, raw_producer, send_raw
from tests.conftest import REPO

# == 5. poison and fuzz ========================================================================

DEEP = b'{"message_id":"d","text":"hi","a":' + b"[" * 300 + b"]" * 300 + b"}"


@dataclass
class Case:
    name: str
    records: list[Record]
    partitions: int = 1
    conf: dict[str, Any] = field(default_factory=dict)  # producer overrides
    raw: bool = False  # through raw librdkafka (any header key bytes, exact null values)
    skipped: str = ""


def _canaries(prefix: str, k: int) -> list[Record]:
    """Normal messages around a poison record: they must be routed too."""
    return [good(i, f"{prefix}-canary-", kind="canary") for i in range(k)]


def _poison_cases(ctx: Ctx, fuzz_n: int) -> list[Case]:
    raw_ok, why = raw_producer()
    late = frozenset({"route"} | LATE_STAGES)
    deep = Record(Sent("deep", "poison:deep-json", late, "d"), b"deep", DEEP, [(b"case", b"deep")])
    key = Record(
        Sent("hk", "poison:header-key", frozenset({"dlq:decode"})),
        b"hk",
        b'{"message_id":"hk","text":"where is my refund"}',
        [(b"\xff\xfekey", b"v"), (b"traceparent", b"00-hk-01")],
    )
    null = good(0, "nh-", kind="poison:none-header")
    null = Record(null.sent, null.key, null.value, [(b"x-null", None), (b"traceparent", b"x")])
    null_bad = Record(
        Sent("nh-bad", "poison:none-header", frozenset({"dlq:decode"})),
        b"nh-bad",
        b"not json",
        [(b"x-null", None)],
    )
    text = "please help me with my refund " * (5_000_000 // 30)
    big = Record(
        Sent("big", "poison:zstd-5mb", frozenset({"dlq:validate", "dlq:produce"}), "big"),
        b"big",
        json.dumps({"message_id": "big", "text": text}).encode(),
        [],
    )
    fuzz: list[Record] = []
    for i, (k, v, h) in enumerate(live_cases(fuzz_n, ctx.seed)):
        if not raw_ok:  # the plain producer sends str keys only
            h = [(n.decode("utf-8", "backslashreplace").encode(), x) for n, x in h]
        fuzz.append(Record(Sent(f"fz{i}", "fuzz", frozenset(expected_place(k, v, h))), k, v, h))
        if i % 25 == 0:
            fuzz.append(good(i, "fz-canary-", kind="canary"))
    return [
        Case("deep-json", [*_canaries("dj-a", 5), deep, *_canaries("dj-b", 5)]),
        Case(
            "header-key",
            [*_canaries("hk-a", 3), key, *_canaries("hk-b", 3)],
            raw=True,
            skipped="" if raw_ok else f"{why}: raw librdkafka is needed to send that key",
        ),
        Case(
            "none-header",
            [*_canaries("nh-a", 3), null, null_bad, *_canaries("nh-b", 3)],
            raw=bool(raw_ok),
        ),
        Case(
            "zstd-5mb",
            [*_canaries("zs-a", 3), big, *_canaries("zs-b", 3)],
            conf={"compression.type": "zstd", "message.max.bytes": 16 * 1024 * 1024},
        ),
        Case(
            "fuzz",
            fuzz,
            raw=bool(raw_ok),
            skipped="" if raw_ok else f"{why}: header keys sent as UTF-8 only",
        ),
    ]


def poison(ctx: Ctx) -> dict[str, Any]:
    fuzz_n, in_process = (300, 5_000) if ctx.short else (2000, 100_000)
    timeout = 75 if ctx.short else 150
    started = time.monotonic()
    cases = _poison_cases(ctx, fuzz_n)
    runs: list[tuple[Case, Run]] = []
    for case in cases:
        if case.skipped and case.raw:
            continue  # cannot be produced here: reported as skipped
        run = Run(ctx, f"poison-{case.name}", partitions=case.partitions)
        run.restarts_left = 2  # enough to see a crash loop, bounded
        run.fleet.start("r0")
        runs.append((case, run))
    for case, run in runs:
        run.ready("r0")
        if case.raw:
            send_raw(ctx.bootstrap, run.topics.inbound, run.inputs, case.records)
        else:
            feeder = Feeder(ctx.bootstrap, run.topics.inbound, run.inputs, **case.conf)
            feeder.send_all(case.records, timeout=60)
    deadline = time.monotonic() + timeout
    pending = list(runs)
    while pending and time.monotonic() < deadline:
        for item in list(pending):
            _, run = item
            run.supervise()
            crash_looping = run.restarts_left == 0 and not run.fleet.running()
            if run.outstanding() == 0 or crash_looping:
                pending.remove(item)
        time.sleep(0.5)
    results = []
    total: dict[str, int] = defaultdict(int)
    deaths: list[dict[str, Any]] = []
    peaks: dict[str, float] = {}
    examples: dict[str, list[str]] = defaultdict(list)
    for case, run in runs:
        acc, extra = run.finish(drain_timeout=45)
        for k, v in extra["counts"].items():
            total[k] += v
        for k, v in extra["examples"].items():
            examples[k] += [f"[{case.name}] {x}" for x in v[:3]]
        deaths += [
            {**d, "replica": f"{case.name}/{d['replica']}"} for d in extra["workers"]["deaths"]
        ]
        peaks[case.name] = extra["peak_rss_mib"].get("r0", 0.0)
        passed = acc.ok() and all(c["ok"] for c in run.checks if c.get("required", True))
        c = extra["counts"]
        results.append(
            {
                "name": case.name,
                "passed": passed,
                "counts": c,
                "checks": run.checks,
                "examples": extra["examples"],
                "deaths": extra["workers"]["deaths"],
                "summary": f"in {c['in']}, out {c['out']}, missing {c['missing']}, "
                f"duplicated {c['duplicated']}, wrong {c['wrong_place']}, "
                f"worker deaths {len(extra['workers']['deaths'])}"
                + (f" (note: {case.skipped})" if case.skipped else ""),
            }
        )
    fuzz_summary = _in_process_fuzz(ctx, in_process)
    for case in cases:
        if case.skipped and case.raw:
            results.append(
                {
                    "name": case.name,
                    "passed": True,
                    "skipped": case.skipped,
                    "summary": f"SKIPPED: {case.skipped}",
                }
            )
    fuzz_ok = fuzz_summary.get("problems") == 0 and fuzz_summary.get("cases", 0) >= in_process
    results.append(
        {
            "name": "in-process-fuzz",
            "passed": fuzz_ok,
            "fuzz": fuzz_summary,
            "summary": f"{fuzz_summary.get('cases')} cases, "
            f"{fuzz_summary.get('problems')} problems "
            f"{fuzz_summary.get('by_problem', {})}",
        }
    )
    checks = [
        {"name": f"case {r['name']}", "ok": r["passed"], "detail": r["summary"]} for r in results
    ]
    passed = all(r["passed"] for r in results)
    return {
        "scenario": "poison",
        "passed": passed,
        "cases": results,
        "checks": checks,
        "about": "Poison records and fuzz through the live worker (each case on its own "
        "topics and worker, canaries around it), and the in-process fuzz of "
        "decode -> route -> serialize.",
        "params": {"live_fuzz_cases": fuzz_n, "in_process_cases": in_process},
        "counts": dict(total),
        "examples": dict(examples),
        "workers": {"deaths": deaths},
        "peak_rss_mib": peaks,
        "fault_summary": f"{len(results)} cases, {len(deaths)} worker deaths",
        "recovery": {},
        "seconds": round(time.monotonic() - started, 1),
        "tails": {},
    }


def _in_process_fuzz(ctx: Ctx, examples: int) -> dict[str, Any]:
    """tests/chaos/fuzz.py in a subprocess: a crash in the chain is a finding, not ours."""
    out = ctx.out_dir / "logs" / ctx.run_id / "in-process-fuzz.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"  in-process fuzz: {examples} cases", flush=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.chaos.fuzz",
            "--examples",
            str(examples),
            "--seed",
            str(ctx.seed),
            "--json",
            str(out),
            "--budget-s",
            "900",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0 or not out.exists():
        return {
            "cases": 0,
            "problems": -1,
            "crashed": proc.returncode,
            "stderr": proc.stderr[-2000:],
        }
    summary: dict[str, Any] = json.loads(out.read_text())
    return summary
