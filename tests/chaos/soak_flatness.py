"""Is a soak flat? The first window against the last, per figure, within a stated tolerance.

The kills replace worker processes every few minutes, so no process lives through the
run; what must not grow is what the fleet's processes look like early and late. Per
figure:

* resident memory (VmRSS), open fds, threads: the median over every sample of every
  worker process in the window, leaving out samples of processes younger than
  ``settle_s`` (a restarted process loads its model and joins the group first: its
  figures then are start-up, not the steady state);
* log bytes per message: the bytes every worker log grew by in the window (killed
  processes' logs included) over the outputs committed in it.

RSS and log bytes per message pass within a relative tolerance of the first window's
figure (either way), fds and threads within an absolute one. The kill schedule puts
the same number of kills in both windows (see soak.kill_times), so restarts weigh
equally on both.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.chaos.soak_sample import FleetSample, ProcSample


@dataclass(frozen=True)
class Rule:
    metric: str  # rss_mib | fds | threads | log_bytes_per_message
    relative: bool  # tolerance is a fraction of the first window's figure; else absolute
    tolerance: float

    def describe(self) -> str:
        return f"±{self.tolerance:.0%}" if self.relative else f"±{self.tolerance:g}"


DEFAULT_RULES = (
    Rule("rss_mib", True, 0.10),
    Rule("fds", False, 2),
    Rule("threads", False, 1),
    Rule("log_bytes_per_message", True, 0.20),
)


@dataclass(frozen=True)
class Window:
    name: str
    lo: float  # seconds since the steady phase began
    hi: float

    def holds(self, t: float) -> bool:
        return self.lo <= t <= self.hi


def windows(duration_s: float, window_s: float) -> tuple[Window, Window]:
    """The first and the last ``window_s`` of a steady phase ``duration_s`` long."""
    if not 0 < window_s <= duration_s / 2:
        raise ValueError(f"a window of {window_s}s does not fit twice into {duration_s}s")
    return Window("first", 0.0, window_s), Window("last", duration_s - window_s, duration_s)


def settled(samples: Sequence[ProcSample], window: Window, settle_s: float) -> list[ProcSample]:
    """The window's samples of processes at least ``settle_s`` old."""
    return [s for s in samples if window.holds(s.t) and s.age_s >= settle_s]


def proc_median(
    samples: Sequence[ProcSample], metric: str, window: Window, settle_s: float
) -> float | None:
    """Median of rss_mib, fds or threads over the window's settled samples; None if none."""
    values = [_value(s, metric) for s in settled(samples, window, settle_s)]
    return float(statistics.median(values)) if values else None


def _value(s: ProcSample, metric: str) -> float:
    if metric == "rss_mib":
        return s.rss_kib / 1024
    if metric in ("fds", "threads"):
        return float(getattr(s, metric))
    raise ValueError(f"not a per-process figure: {metric}")


def log_bytes_per_message(fleet: Sequence[FleetSample], window: Window) -> float | None:
    """Log bytes written over outputs committed between the window's first and last fleet
    samples; None with fewer than two samples or no output in between."""
    inside = sorted((f for f in fleet if window.holds(f.t)), key=lambda f: f.t)
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[-1]
    outputs = b.outputs - a.outputs
    if outputs <= 0:
        return None
    return (b.log_bytes - a.log_bytes) / outputs


def figure(
    metric: str,
    procs: Sequence[ProcSample],
    fleet: Sequence[FleetSample],
    window: Window,
    settle_s: float,
) -> float | None:
    if metric == "log_bytes_per_message":
        return log_bytes_per_message(fleet, window)
    return proc_median(procs, metric, window, settle_s)


def judge(rule: Rule, first: float | None, last: float | None) -> tuple[bool, str]:
    """(within tolerance, the change as text): relative rules compare last/first - 1."""
    if first is None or last is None:
        return False, "no samples"
    if rule.relative:
        if first == 0:
            return last == 0, "first window is 0"
        change = last / first - 1
        return abs(change) <= rule.tolerance + 1e-12, f"{change:+.1%}"
    delta = last - first
    return abs(delta) <= rule.tolerance + 1e-12, f"{delta:+g}"


def flatness(
    procs: Sequence[ProcSample],
    fleet: Sequence[FleetSample],
    duration_s: float,
    window_s: float,
    settle_s: float,
    rules: Sequence[Rule] = DEFAULT_RULES,
) -> list[dict[str, Any]]:
    """One row per rule: both windows' figures, the change, the tolerance and the verdict."""
    first_w, last_w = windows(duration_s, window_s)
    rows = []
    for rule in rules:
        first = figure(rule.metric, procs, fleet, first_w, settle_s)
        last = figure(rule.metric, procs, fleet, last_w, settle_s)
        ok, change = judge(rule, first, last)
        rows.append(
            {
                "metric": rule.metric,
                "first": first,
                "last": last,
                "change": change,
                "tolerance": rule.describe(),
                "ok": ok,
            }
        )
    return rows


def cpu_cores(samples: Sequence[ProcSample], window: Window) -> float:
    """Cores the worker processes kept busy in the window: per process, the CPU seconds
    between its first and last sample there, summed, over the window's length. A lower
    bound: the seconds between a process's last sample and its kill are not seen."""
    spans: dict[int, list[float]] = {}
    for s in samples:
        if window.holds(s.t):
            spans.setdefault(s.pid, []).append(s.cpu_s)
    busy = sum(max(v) - min(v) for v in spans.values())
    return busy / (window.hi - window.lo) if window.hi > window.lo else 0.0


def window_counts(
    procs: Sequence[ProcSample], duration_s: float, window_s: float, settle_s: float
) -> dict[str, dict[str, int]]:
    """Per window: settled samples and distinct processes behind the medians."""
    out = {}
    for w in windows(duration_s, window_s):
        inside = settled(procs, w, settle_s)
        out[w.name] = {"samples": len(inside), "processes": len({s.pid for s in inside})}
    return out
