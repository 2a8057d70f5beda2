"""The soak's schedule, its options and its report."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.soak import kill_times, parse_args, rules
from tests.chaos.soak_flatness import windows
from tests.chaos.soak_report import flags_text, markdown, parse_cpuinfo

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 sha_ni
processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu
"""


def test_the_first_cpu_and_the_flags_the_docs_report() -> None:
    info = parse_cpuinfo(CPUINFO)
    assert info == {"model": "AMD EPYC 9B14", "flags": ["avx2", "avx512f", "avx512_bf16"]}
    assert flags_text(info["flags"]) == "flags avx2 avx512f avx512_bf16"
    assert flags_text([]).startswith("none of avx2")


@pytest.mark.parametrize(
    ("duration", "every", "window", "kills", "each"),
    [(3600, 300, 600, 12, 2), (720, 120, 120, 6, 1), (720, 120, 240, 6, 2)],
)
def test_kills_sit_mid_period_so_both_windows_hold_as_many(
    duration: float, every: float, window: float, kills: int, each: int
) -> None:
    times = kill_times(duration, every)
    assert len(times) == kills and times[0] == every / 2
    assert all(0 < t < duration for t in times)
    for w in windows(duration, window):
        assert sum(w.holds(t) for t in times) == each


def test_no_kills_when_asked_for_none() -> None:
    assert kill_times(600, 0) == []


def test_options_defaults_and_refusals() -> None:
    args = parse_args([])
    assert (args.minutes, args.kill_every, args.hostile, args.window_minutes) == (60, 300, 0.01, 10)
    assert [r.describe() for r in rules(args)] == ["±10%", "±2", "±1", "±20%"]
    with pytest.raises(SystemExit):
        parse_args(["--minutes", "12"])  # two 10-minute windows do not fit into 12
    with pytest.raises(SystemExit):
        parse_args(["--partitions", "1"])


def report(ok: bool) -> dict[str, Any]:
    win = {
        "lo": 0,
        "hi": 600,
        "kills": 2,
        "samples": 100,
        "processes": 4,
        "outputs": 30000,
        "worker_cpu_cores": 0.2,
    }
    return {
        "meta": {
            "run_id": "r",
            "command": "python -m tests.chaos.soak",
            "minutes": 60,
            "rate": 50,
            "achieved_rate": 50.0,
            "workers": 2,
            "partitions": 4,
            "hostile": 0.01,
            "kill_every_s": 300,
            "seed": 1,
            "cpu": {"model": "X", "flags": ["avx2"]},
            "seconds": 3700,
            "cores": 2,
            "worker_cpu_cores": 0.2,
            "settle_s": 30,
        },
        "passed": ok,
        "flatness": [
            {
                "metric": "rss_mib",
                "first": 834.2,
                "last": 990.0,
                "change": "+18.7%",
                "tolerance": "±10%",
                "ok": ok,
            },
        ],
        "windows": {"first": win, "last": {**win, "lo": 3000, "hi": 3600}},
        "kills": 12,
        "counts": {
            "in": 180000,
            "out": 180000,
            "missing": 0,
            "duplicated": 0,
            "wrong_place": 0,
            "unmatched_out": 0,
            "not_delivered": 0,
        },
        "kinds": {"good": 178200, "fuzz": 1260, "bad": 270},
        "checks": [{"name": "no worker died by itself", "ok": True, "detail": ""}],
        "examples": {"missing": []},
    }


def test_the_markdown_has_the_table_and_the_verdict() -> None:
    md = markdown(report(False))
    assert md.startswith("# Soak r: **FAIL**")
    assert "| RSS per worker process, median (MiB) | 834 | 990 | +18.7% | ±10% | **NO** |" in md
    assert "in 180,000, out 180,000, missing 0, duplicated 0" in md
    assert "fuzz 1,260" in md and "good" not in md.split("Hostile records:")[1].split("\n")[0]
    assert "**PASS**" in markdown(report(True))
