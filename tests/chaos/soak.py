"""python -m tests.chaos.soak [--minutes 60] [--rate R] [--kill-every 300] [--hostile 0.01]

The soak (`make soak`, issue 22): worker processes under a steady rate for a long time,
a share of hostile records among the messages, and a SIGKILL of one worker every
--kill-every seconds, restarted at once as a supervisor would. Every --sample-every
seconds it samples each worker process's resident memory, open fds, threads, log bytes
and committed messages; at the end it judges whether those are flat between the first
and the last --window-minutes (tests/chaos/soak_flatness.py says how), and accounts for
every input with a read_committed reader of the route topics and the DLQ, like the
chaos suite. It exits 0 only when the figures are flat and the accounting exact.

On a broker of its own (LOCAL_KAFKA_STATE=.kafka-soak on a free port), never the one of
`make test`, `make demo` or `make chaos`. Writes report.json, report.md, series.csv and
fleet.csv into --out, the workers' logs under --out/logs/, and stops everything it
started, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import IO, Any

from tests.chaos.__main__ import smoke_artifact
from tests.chaos.broker import ChaosBroker
from tests.chaos.observe import CommittedTail
from tests.chaos.scenarios.common import Ctx, Run
from tests.chaos.soak_feed import HOSTILE_MIX, SteadyFeed
from tests.chaos.soak_flatness import Rule, Window, cpu_cores, flatness, window_counts, windows
from tests.chaos.soak_report import cpu_info, write
from tests.chaos.soak_sample import (
    FleetSample,
    ProcSample,
    csv_header,
    csv_row,
    file_size,
    read_proc,
)
from tests.conftest import REPO

DEFAULT_STATE = REPO / ".kafka-soak"


def kill_times(duration_s: float, every_s: float) -> list[float]:
    """When to kill, in seconds into the steady phase: every_s apart, starting at every_s / 2.

    Offset by half a period so that no kill falls on a window's edge, and a window that is
    a whole number of periods long, first or last, holds the same number of kills.
    """
    if every_s <= 0:
        return []
    n = math.ceil(duration_s / every_s - 0.5)
    return [every_s / 2 + k * every_s for k in range(max(0, n))]


class Sampler:
    """Samples every live worker process and the fleet; appends both to CSV files."""

    def __init__(self, run: Run, feed: SteadyFeed, tail: CommittedTail, out_dir: Path) -> None:
        self.run, self.feed, self.tail = run, feed, tail
        self.procs: list[ProcSample] = []
        self.fleet: list[FleetSample] = []
        self.t0 = time.monotonic()
        out_dir.mkdir(parents=True, exist_ok=True)
        self._series: IO[str] = (out_dir / "series.csv").open("w")
        self._fleet: IO[str] = (out_dir / "fleet.csv").open("w")
        self._series.write(csv_header(ProcSample) + "\n")
        self._fleet.write(csv_header(FleetSample) + "\n")

    def now(self) -> float:
        return time.monotonic() - self.t0

    def take(self) -> None:
        t = round(self.now(), 1)
        running = 0
        log_bytes = 0
        for name, replica in self.run.fleet.replicas.items():
            for life_no, life in enumerate(replica.lives):
                size = file_size(life.worker.log_path)
                log_bytes += size
                if life.ended is not None:
                    continue
                proc = read_proc(life.pid)
                if proc is None:
                    continue
                running += 1
                w = life.worker
                if not w.admin_port:
                    w.ready()  # reads the admin port from its log once it is there
                sample = ProcSample(
                    t,
                    name,
                    life_no,
                    life.pid,
                    round(time.monotonic() - life.started, 1),
                    *proc,
                    size,
                    w.committed() if w.admin_port else 0.0,
                )
                self.procs.append(sample)
                self._series.write(csv_row(sample) + "\n")
        row = FleetSample(t, self.tail.count(), self.feed.produced, log_bytes, running)
        self.fleet.append(row)
        self._fleet.write(csv_row(row) + "\n")
        self._series.flush()
        self._fleet.flush()

    def close(self) -> None:
        self._series.close()
        self._fleet.close()


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every finally: workers, topics, broker


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=60, help="steady phase (default 60)")
    p.add_argument("--rate", type=float, default=50, help="messages per second (default 50)")
    p.add_argument("--kill-every", type=float, default=300, help="seconds between SIGKILLs")
    p.add_argument("--hostile", type=float, default=0.01, help="share of hostile records")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4, help="inbound partitions (2+)")
    p.add_argument(
        "--window-minutes", type=float, default=10, help="first and last window (default 10)"
    )
    p.add_argument("--sample-every", type=float, default=10, help="seconds between samples")
    p.add_argument(
        "--settle-s",
        type=float,
        default=30,
        help="leave out samples of processes younger than this (start-up)",
    )
    p.add_argument("--rss-tolerance", type=float, default=0.10, help="relative (0.10 = 10%%)")
    p.add_argument("--fd-tolerance", type=float, default=2, help="absolute")
    p.add_argument("--thread-tolerance", type=float, default=1, help="absolute")
    p.add_argument("--log-tolerance", type=float, default=0.20, help="relative")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "soak")
    p.add_argument("--seed", type=int, help="hostile records and their share; default: new")
    p.add_argument("--model", type=Path, help="artifact dir (default: the smoke artifact)")
    p.add_argument("--state", type=Path, default=DEFAULT_STATE, help="its broker's state dir")
    args = p.parse_args(argv)
    if args.workers < 1 or args.partitions < 2 or args.rate <= 0:
        p.error("needs --workers 1+, --partitions 2+ and a positive --rate")
    try:
        windows(args.minutes * 60, args.window_minutes * 60)
    except ValueError as exc:
        p.error(str(exc))
    return args


def rules(args: argparse.Namespace) -> tuple[Rule, ...]:
    return (
        Rule("rss_mib", True, args.rss_tolerance),
        Rule("fds", False, args.fd_tolerance),
        Rule("threads", False, args.thread_tolerance),
        Rule("log_bytes_per_message", True, args.log_tolerance),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    duration = args.minutes * 60
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGALRM, _sigterm)  # bounded, whatever hangs
    signal.alarm(int(duration + 20 * 60))
    started = time.monotonic()
    broker: ChaosBroker | None = None
    ctx: Ctx | None = None
    sampler: Sampler | None = None
    report: dict[str, Any] | None = None
    try:
        artifact = args.model or smoke_artifact()
        broker = ChaosBroker(args.state)
        print(f"starting the soak broker ({args.state}, port {broker.port})", flush=True)
        bootstrap = broker.up()
        ctx = Ctx(bootstrap, artifact, args.out, False, seed, broker)
        print(
            f"soak {ctx.run_id}: seed {seed}, broker {bootstrap}, model {artifact}, "
            f"{args.minutes:g} min at {args.rate:g} msg/s",
            flush=True,
        )
        report, sampler = soak(ctx, args, seed, duration)
    except KeyboardInterrupt:
        print(
            "interrupted (Ctrl-C, SIGTERM or the time bound): stopping everything it started",
            file=sys.stderr,
            flush=True,
        )
        return 130
    finally:
        signal.alarm(0)
        if sampler is not None:
            sampler.close()
        if ctx is not None:
            ctx.close()
        if broker is not None:
            broker.down()
    report["meta"]["seconds"] = round(time.monotonic() - started, 1)
    report["meta"]["command"] = "python -m tests.chaos.soak " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    md = write(args.out, report)
    print(md.read_text().split("\nTime series")[0])
    print(f"reports: {md}, {md.with_suffix('.json')}, series.csv, fleet.csv", flush=True)
    return 0 if report["passed"] else 1


def soak(
    ctx: Ctx, args: argparse.Namespace, seed: int, duration: float
) -> tuple[dict[str, Any], Sampler]:
    run = Run(ctx, "soak", partitions=args.partitions)
    run.restarts_left = 3  # a death is a failed check; restart to keep the soak measuring
    names = [f"r{i}" for i in range(args.workers)]
    for name in names:
        run.fleet.start(name)
    if not run.ready(*names):
        raise RuntimeError("the workers did not get ready")
    fuzz_share = dict(HOSTILE_MIX)["fuzz"]
    expected_hostile = args.rate * duration * args.hostile * fuzz_share
    feed = SteadyFeed(
        ctx.bootstrap,
        run.topics.inbound,
        args.partitions,
        run.inputs,
        run.feeder,
        rate=args.rate,
        hostile=args.hostile,
        seed=seed,
        hostile_pool=min(2000, int(expected_hostile * 1.2) + 10),
    )
    sampler = Sampler(run, feed, run.tail, args.out)
    run.faults.started = sampler.t0  # its printed times then read as the report's
    schedule = kill_times(duration, args.kill_every)
    kills: list[float] = []
    feed.start()
    sampler.take()
    next_sample, next_report = args.sample_every, 60.0
    while (t := sampler.now()) < duration:
        run.supervise()
        if len(kills) < len(schedule) and t >= schedule[len(kills)]:
            victim = names[len(kills) % len(names)]
            run.fleet.kill(victim)
            run.fleet.start(victim)  # at once, as Kubernetes restarts a killed container
            kills.append(round(t, 1))
        if t >= next_sample:
            sampler.take()
            next_sample += args.sample_every
        if t >= next_report:
            _progress(sampler)
            next_report += 60
        time.sleep(min(0.25, max(0.0, duration - sampler.now())))
    sampler.take()  # the end of the steady phase: the last window's edge
    achieved = feed.produced / max(sampler.now(), 1e-9)
    feed.stop()
    done = run.wait_all_out(300)
    run.check("every input has an output before the deadline", done)
    run.check(
        f"{len(schedule)} SIGKILLs on schedule, each restarted at once",
        len(kills) == len(schedule),
        f"at {', '.join(f'{k:.0f}' for k in kills)} s",
    )
    run.check(
        "the producer and the raw lane raised nothing", not feed.errors, "; ".join(feed.errors[:3])
    )
    acc, extra = run.finish()
    rows = flatness(
        sampler.procs,
        sampler.fleet,
        duration,
        args.window_minutes * 60,
        args.settle_s,
        rules(args),
    )
    counts_by_window = window_counts(
        sampler.procs, duration, args.window_minutes * 60, args.settle_s
    )
    wins = {}
    for w in windows(duration, args.window_minutes * 60):
        inside = [f for f in sampler.fleet if w.holds(f.t)]
        wins[w.name] = {
            "lo": w.lo,
            "hi": w.hi,
            "kills": sum(w.holds(k) for k in kills),
            "outputs": inside[-1].outputs - inside[0].outputs if len(inside) > 1 else 0,
            "worker_cpu_cores": round(cpu_cores(sampler.procs, w), 3),
            **counts_by_window[w.name],
        }
    run.check(
        "the same number of kills in both windows (restarts weigh equally)",
        wins["first"]["kills"] == wins["last"]["kills"],
        f"{wins['first']['kills']} and {wins['last']['kills']}",
        required=False,
    )
    flat = all(r["ok"] for r in rows)
    exact = acc.ok() and all(c["ok"] for c in run.checks if c.get("required", True))
    report = {
        "meta": {
            "run_id": ctx.run_id,
            "seed": seed,
            "broker": ctx.bootstrap,
            "model": str(ctx.artifact),
            "minutes": args.minutes,
            "rate": args.rate,
            "achieved_rate": round(achieved, 2),
            "kill_every_s": args.kill_every,
            "hostile": args.hostile,
            "workers": args.workers,
            "partitions": args.partitions,
            "window_minutes": args.window_minutes,
            "sample_every_s": args.sample_every,
            "settle_s": args.settle_s,
            "cpu": cpu_info(),
            "cores": os.cpu_count(),
            "worker_cpu_cores": round(cpu_cores(sampler.procs, Window("all", 0, duration)), 3),
        },
        "passed": flat and exact,
        "flat": flat,
        "exact": exact,
        "flatness": rows,
        "windows": wins,
        "kills": len(kills),
        "kill_times_s": kills,
        "kinds": dict(Counter(feed.kinds)),
        "counts": extra["counts"],
        "examples": extra["examples"],
        "checks": run.checks,
        "recovery": {k: v for k, v in extra["recovery"].items() if k != "per_fault"},
        "workers": extra["workers"],
        "reader_errors": extra["reader_errors"],
        "stacks": extra["stacks"],
        "series": ["series.csv", "fleet.csv"],
    }
    return report, sampler


def _progress(sampler: Sampler) -> None:
    f = sampler.fleet[-1]
    latest: dict[str, ProcSample] = {}
    for s in sampler.procs:
        if s.t == f.t:
            latest[s.replica] = s
    procs = ", ".join(
        f"{n} pid {s.pid} {s.rss_kib / 1024:.0f} MiB {s.fds} fds {s.threads} thr"
        for n, s in sorted(latest.items())
    )
    print(
        f"  [soak {f.t:6.0f}s] in {f.inputs:,} out {f.outputs:,} logs {f.log_bytes:,} B; {procs}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
