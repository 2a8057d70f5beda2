"""The soak's verdict: first window against last, medians of settled samples, tolerances."""

from __future__ import annotations

import pytest

from tests.chaos.soak_flatness import (
    DEFAULT_RULES,
    Rule,
    Window,
    cpu_cores,
    flatness,
    judge,
    log_bytes_per_message,
    proc_median,
    window_counts,
    windows,
)
from tests.chaos.soak_sample import FleetSample, ProcSample


def sample(
    t: float,
    pid: int = 1,
    age: float = 100.0,
    rss_mib: float = 800.0,
    fds: int = 20,
    threads: int = 15,
    cpu_s: float = 0.0,
) -> ProcSample:
    return ProcSample(t, "r0", 0, pid, age, int(rss_mib * 1024), fds, threads, cpu_s, 0, 0.0)


def series(
    duration: float = 600, every: float = 10, grow: float = 0.0, fd_step: int = 0
) -> list[ProcSample]:
    """Two processes sampled every ``every`` s, RSS growing by ``grow`` MiB/s."""
    out = []
    for k in range(int(duration / every) + 1):
        t = k * every
        for pid in (1, 2):
            out.append(
                sample(t, pid, age=t + 60, rss_mib=800 + grow * t, fds=20 + fd_step * int(t // 300))
            )
    return out


def fleet(
    duration: float = 600, every: float = 10, bytes_per_msg: float = 80.0
) -> list[FleetSample]:
    return [
        FleetSample(k * every, int(50 * k * every), 0, int(bytes_per_msg * 50 * k * every), 2)
        for k in range(int(duration / every) + 1)
    ]


def test_windows_are_the_first_and_last_stretch() -> None:
    first, last = windows(3600, 600)
    assert (first.lo, first.hi, last.lo, last.hi) == (0, 600, 3000, 3600)
    with pytest.raises(ValueError, match="does not fit twice"):
        windows(600, 400)
    with pytest.raises(ValueError):
        windows(600, 0)


def test_the_median_leaves_out_young_processes_and_other_windows() -> None:
    w = Window("first", 0, 100)
    samples = [
        sample(10, rss_mib=800),
        sample(20, rss_mib=810),
        sample(30, rss_mib=1200),
        sample(40, pid=2, age=5, rss_mib=100),  # just restarted: start-up, not steady state
        sample(200, rss_mib=5000),  # outside the window
    ]
    assert proc_median(samples, "rss_mib", w, settle_s=30) == 810
    assert proc_median(samples, "rss_mib", w, settle_s=0) == pytest.approx(805)
    assert proc_median(samples, "fds", Window("none", 1000, 2000), 30) is None
    with pytest.raises(ValueError, match="not a per-process figure"):
        proc_median(samples, "log_bytes", w, 30)


def test_log_bytes_per_message_is_growth_over_outputs_between_the_window_edges() -> None:
    rows = [
        FleetSample(0, 0, 0, 1000, 2),
        FleetSample(50, 400, 0, 9000, 2),
        FleetSample(100, 1000, 0, 81000, 2),
        FleetSample(150, 2000, 0, 999999, 2),
    ]
    assert log_bytes_per_message(rows, Window("w", 0, 100)) == 80.0
    assert log_bytes_per_message(rows[:1], Window("w", 0, 100)) is None
    stalled = [FleetSample(0, 5, 0, 0, 2), FleetSample(10, 5, 0, 100, 2)]
    assert log_bytes_per_message(stalled, Window("w", 0, 10)) is None


@pytest.mark.parametrize(
    ("rule", "first", "last", "ok", "change"),
    [
        (Rule("rss_mib", True, 0.10), 800.0, 872.0, True, "+9.0%"),
        (Rule("rss_mib", True, 0.10), 800.0, 896.0, False, "+12.0%"),
        (Rule("rss_mib", True, 0.10), 800.0, 700.0, False, "-12.5%"),
        (Rule("rss_mib", True, 0.10), 800.0, 880.0, True, "+10.0%"),  # the edge passes
        (Rule("fds", False, 2), 20.0, 22.0, True, "+2"),
        (Rule("fds", False, 2), 20.0, 23.0, False, "+3"),
        (Rule("threads", False, 1), 15.0, 14.0, True, "-1"),
        (Rule("fds", False, 2), None, 20.0, False, "no samples"),
        (Rule("log_bytes_per_message", True, 0.2), 0.0, 0.0, True, "first window is 0"),
    ],
)
def test_judge(rule: Rule, first: float | None, last: float, ok: bool, change: str) -> None:
    assert judge(rule, first, last) == (ok, change)


def test_a_flat_soak_passes_every_rule() -> None:
    rows = flatness(series(), fleet(), 600, 100, 30)
    assert [r["metric"] for r in rows] == [r.metric for r in DEFAULT_RULES]
    assert all(r["ok"] for r in rows), rows
    assert rows[0]["first"] == rows[0]["last"] == 800


def test_a_leak_fails_the_rule_it_breaks_only() -> None:
    rows = {r["metric"]: r for r in flatness(series(grow=0.5), fleet(), 600, 100, 30)}
    assert not rows["rss_mib"]["ok"]  # 800 + 0.5/s: +~36% from the first window to the last
    assert rows["fds"]["ok"] and rows["threads"]["ok"] and rows["log_bytes_per_message"]["ok"]
    fds = {r["metric"]: r for r in flatness(series(fd_step=3), fleet(), 600, 100, 30)}["fds"]
    assert (fds["first"], fds["last"], fds["ok"]) == (20, 23, False)


def test_more_log_per_message_late_fails() -> None:
    early, late = fleet(bytes_per_msg=80), fleet(bytes_per_msg=100)
    mixed = [
        *early[:31],
        *(
            FleetSample(
                f.t, f.outputs, 0, early[30].log_bytes + (f.log_bytes - late[30].log_bytes), 2
            )
            for f in late[31:]
        ),
    ]
    rows = {r["metric"]: r for r in flatness(series(), mixed, 600, 100, 30)}
    assert rows["log_bytes_per_message"]["first"] == pytest.approx(80)
    assert rows["log_bytes_per_message"]["last"] == pytest.approx(100)
    assert not rows["log_bytes_per_message"]["ok"]


def test_cpu_cores_sums_each_process_over_the_window() -> None:
    samples = [
        sample(0, 1, cpu_s=10),
        sample(100, 1, cpu_s=30),
        sample(50, 2, cpu_s=0),
        sample(100, 2, cpu_s=20),
    ]
    assert cpu_cores(samples, Window("w", 0, 100)) == pytest.approx(0.4)


def test_window_counts_say_what_the_medians_stand_on() -> None:
    counts = window_counts(series(), 600, 100, 30)
    assert counts == {
        "first": {"samples": 22, "processes": 2},
        "last": {"samples": 22, "processes": 2},
    }
