"""What the soak samples: a worker process's resident memory, open fds, threads and log size.

Read from /proc (Linux) every ~10 s per live worker process, plus one fleet-wide row per
round: committed outputs so far (the read_committed reader's count, which survives the
kills) and the bytes of every worker log, live or from a killed process.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's CPU times


@dataclass(frozen=True)
class ProcSample:
    """One worker process at one moment."""

    t: float  # seconds since the steady phase began
    replica: str
    life: int  # 0 for the replica's first process, 1 after its first restart, ...
    pid: int
    age_s: float  # seconds since this process was started
    rss_kib: int
    fds: int
    threads: int
    cpu_s: float  # user + system CPU seconds so far
    log_bytes: int  # its stdout+stderr log so far
    committed: float  # results + dead letters it committed (its /metrics; 0 unanswered)


@dataclass(frozen=True)
class FleetSample:
    """The whole fleet at one moment."""

    t: float
    outputs: int  # committed outputs the read_committed reader has seen
    inputs: int  # records produced (handed to a producer)
    log_bytes: int  # every worker log of the run, killed processes' included
    running: int  # worker processes alive


def parse_status(text: str) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads from the text of /proc/PID/status.

    A kernel thread or a zombie has no Vm* lines: those keys are then absent.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


def parse_stat_cpu(text: str) -> float:
    """User + system CPU seconds from the text of /proc/PID/stat (fields 14 and 15).

    The command name (field 2) is in parentheses and may hold spaces or ')': the fields
    are counted after the last ')'.
    """
    rest = text.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


def count_fds(pid: int) -> int | None:
    """Open file descriptors of a process (entries of /proc/PID/fd); None when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def read_proc(pid: int) -> tuple[int, int, int, float] | None:
    """(VmRSS KiB, open fds, threads, CPU seconds) of a live process; None when it is gone
    or a zombie."""
    try:
        status = parse_status(Path(f"/proc/{pid}/status").read_text())
        cpu_s = parse_stat_cpu(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return None
    fds = count_fds(pid)
    if fds is None or "VmRSS" not in status or "Threads" not in status:
        return None
    return status["VmRSS"], fds, status["Threads"], round(cpu_s, 2)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def csv_header(cls: type[ProcSample] | type[FleetSample]) -> str:
    return ",".join(f.name for f in fields(cls))


def csv_row(sample: ProcSample | FleetSample) -> str:
    return ",".join(_cell(v) for v in asdict(sample).values())


def _cell(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)
