"""The soak's reports: report.json, report.md (first vs last window, the verdict) and the CPU.

The time series themselves are written while the soak runs (soak_sample's CSV rows), so
that an interrupted hour still leaves its samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The instruction-set flags docs/reliability.md reports with every figure.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")

UNITS = {
    "rss_mib": "RSS per worker process, median (MiB)",
    "fds": "open fds per worker process, median",
    "threads": "threads per worker process, median",
    "log_bytes_per_message": "log bytes per message (all workers)",
}


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The first CPU's model name and which of CPU_FLAGS it has, from /proc/cpuinfo."""
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags]}


def cpu_info() -> dict[str, Any]:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {"model": "", "flags": []}


def flags_text(flags: list[str]) -> str:
    """Which of CPU_FLAGS are present, in words (the docs quote it)."""
    if not flags:
        return f"none of {', '.join(CPU_FLAGS)}"
    return "flags " + " ".join(flags)


def _secs(x: float | None) -> str:
    return "- (none seen)" if x is None else f"{x:.1f} s"


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    counts = report["counts"]
    verdict = "PASS" if report["passed"] else "FAIL"
    first, last = report["windows"]["first"], report["windows"]["last"]
    cpu = meta["cpu"]
    rec = report.get("recovery") or {}
    lines = [
        f"# Soak {meta['run_id']}: **{verdict}**",
        "",
        f"`{meta['command']}`",
        "",
        f"{meta['minutes']:g} min steady at {meta['rate']:g} msg/s "
        f"({meta['achieved_rate']:.1f} achieved), {meta['workers']} workers, "
        f"{meta['partitions']} inbound partitions, hostile share {meta['hostile']:.1%}, "
        f"a SIGKILL every {meta['kill_every_s']:g} s ({report['kills']} in all), seed "
        f"{meta['seed']}; {cpu['model']} ({flags_text(cpu['flags'])}), "
        f"{meta['seconds']:.0f} s in all. The workers kept {meta['worker_cpu_cores']:.2f} "
        f"of the machine's {meta['cores']} cores busy.",
        "",
        f"Windows: first {first['lo']:.0f} to {first['hi']:.0f} s, last {last['lo']:.0f} to "
        f"{last['hi']:.0f} s of the steady phase; per-process medians leave out processes "
        f"younger than {meta['settle_s']:g} s.",
        "",
        "| figure | first window | last window | change | tolerance | flat |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in report["flatness"]:
        lines.append(
            f"| {UNITS.get(row['metric'], row['metric'])} | {_fmt(row['first'])} | "
            f"{_fmt(row['last'])} | {row['change']} | {row['tolerance']} | "
            f"{'yes' if row['ok'] else '**NO**'} |"
        )
    lines += [
        "",
        "| | first window | last window |",
        "|---|---:|---:|",
        f"| kills | {first['kills']} | {last['kills']} |",
        f"| settled samples (processes) | {first['samples']} ({first['processes']}) | "
        f"{last['samples']} ({last['processes']}) |",
        f"| outputs committed | {first['outputs']:,} | {last['outputs']:,} |",
        f"| worker CPU (cores busy, sampled) | {first['worker_cpu_cores']:.2f} | "
        f"{last['worker_cpu_cores']:.2f} |",
        "",
        f"Accounting (read_committed, every route topic and the DLQ): in {counts['in']:,}, "
        f"out {counts['out']:,}, missing {counts['missing']}, duplicated "
        f"{counts['duplicated']}, wrong place {counts['wrong_place']}, unmatched "
        f"{counts['unmatched_out']}, not delivered {counts['not_delivered']}.",
        "",
        f"After each kill: the next committed output within {_secs(rec.get('longest_s'))}, "
        f"the longest stall of an inbound partition {_secs(rec.get('longest_partition_stall_s'))}"
        ".",
        "",
        "Hostile records: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(report["kinds"].items()) if k != "good"))
        + f" (of {sum(report['kinds'].values()):,} produced).",
        "",
    ]
    for check in report["checks"]:
        mark = "ok" if check["ok"] else "**FAILED**"
        if not check.get("required", True):
            mark = "info, " + ("yes" if check["ok"] else "no")
        detail = f" ({check['detail']})" if check.get("detail") else ""
        lines.append(f"- {mark}: {check['name']}{detail}")
    for kind, ids in (report.get("examples") or {}).items():
        if ids:
            lines.append(f"- {kind}, e.g.: " + "; ".join(f"`{i}`" for i in ids[:5]))
    lines += [
        "",
        "Time series: `series.csv` (one row per worker process per sample) and `fleet.csv` "
        "(outputs, inputs and log bytes of the whole fleet per sample).",
    ]
    return "\n".join(lines) + "\n"


def write(out_dir: Path, report: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = out_dir / "report.md"
    md.write_text(markdown(report))
    return md
