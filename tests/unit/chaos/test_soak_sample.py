"""The soak's /proc readers: resident memory, threads, CPU time and open fds."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.chaos.soak_sample import (
    CLOCK_TICKS,
    FleetSample,
    ProcSample,
    count_fds,
    csv_header,
    csv_row,
    parse_stat_cpu,
    parse_status,
    read_proc,
)

STATUS = """Name:\tpython
State:\tS (sleeping)
VmPeak:\t 4691016 kB
VmHWM:\t  933260 kB
VmRSS:\t  840040 kB
RssAnon:\t  700000 kB
Threads:\t15
SigQ:\t0/95436
"""


def test_status_gives_rss_hwm_and_threads_only() -> None:
    assert parse_status(STATUS) == {"VmRSS": 840040, "VmHWM": 933260, "Threads": 15}


def test_a_zombie_has_no_memory_lines() -> None:
    assert parse_status("Name:\tpython\nState:\tZ (zombie)\nThreads:\t1\n") == {"Threads": 1}


def test_cpu_time_is_counted_after_the_last_parenthesis() -> None:
    # A command name may hold spaces and ')': fields 14 and 15 count from after it.
    fields = ["S", *map(str, range(4, 14)), "250", "50", *map(str, range(16, 53))]
    line = "1234 (odd) name) " + " ".join(fields)
    assert parse_stat_cpu(line) == (250 + 50) / CLOCK_TICKS


def test_this_process_reads_as_alive_and_an_open_file_counts() -> None:
    sample = read_proc(os.getpid())
    assert sample is not None
    rss_kib, fds, threads, cpu_s = sample
    assert rss_kib > 1000 and fds > 2 and threads >= 1 and cpu_s > 0
    before = count_fds(os.getpid())
    with open(__file__) as f:
        assert count_fds(os.getpid()) == (before or 0) + 1
        assert f.readable()


def test_a_process_that_is_gone_reads_as_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert read_proc(proc.pid) is None
    assert count_fds(proc.pid) is None


def test_csv_rows_follow_the_header() -> None:
    s = ProcSample(10.04, "r0", 1, 99, 5.0, 800_000, 20, 15, 1.25, 4096, 12.0)
    assert csv_header(ProcSample).split(",")[:3] == ["t", "replica", "life"]
    assert csv_row(s) == "10.0,r0,1,99,5.0,800000,20,15,1.2,4096,12.0"
    assert len(csv_row(FleetSample(0.0, 1, 2, 3, 2)).split(",")) == len(
        csv_header(FleetSample).split(",")
    )
