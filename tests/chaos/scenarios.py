"""The chaos scenarios (issue 9, "The suite: make chaos").

Each scenario makes its own topics, starts real worker processes (the smoke artifact),
produces messages with unique ids, injects its faults, and then accounts for every
input with a read_committed reader of the route topics and the DLQ. It passes only
with missing = 0, duplicated = 0 and wrong place = 0, plus its own checks (no worker
died by itself, exit codes, ...). Checks are never relaxed to make today's code pass.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from tests.chaos.broker import ChaosBroker
from tests.chaos.faulty_worker import FAIL_MARKER, SLOW_MARKER
from tests.chaos.fleet import Fleet
from tests.chaos.fuzz import expected_place, live_cases
from tests.chaos.observe import CommittedTail, FaultLog, RssSampler
from tests.chaos.report import Accounting, Inputs, Sent, account, recovery
from tests.chaos.workload import Feeder, Record, good, mixed, raw_producer, send_raw
from tests.conftest import REPO
from tests.integration.worker.harness import make_topics
from worker.routing import DEFAULT_MIN_ACTION_CONFIDENCE, RoutingPolicy

SHORT_SET = ("crash-storm", "sigterm-backlog", "poison", "model-fault", "model-down")
ALL = (
    "crash-storm",
    "broker-restart",
    "broker-freeze",
    "scale",
    "sigterm-backlog",
    "poison",
    "model-fault",
    "model-down",
    "slow-model",
    "txn-id",
    "memory",
)
OWN_BROKER = frozenset({"broker-restart", "broker-freeze"})
FAULTY = "tests.chaos.faulty_worker"
# Post-decode stages at which a message the decoder accepted may sensibly be dead-lettered.
LATE_STAGES = frozenset({"dlq:route", "dlq:serialize"})


@dataclass
class Ctx:
    """What every scenario shares: the broker, the model, where to write, and cleanup."""

    bootstrap: str
    artifact: Path
    out_dir: Path
    short: bool
    seed: int
    broker: ChaosBroker | None = None  # None: not ours, so the broker faults are skipped
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    runs: list[Run] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    rss: RssSampler = field(default_factory=RssSampler)

    def __post_init__(self) -> None:
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.rng = random.Random(self.seed)
        self.policy = _artifact_policy(self.artifact)

    def make_topic(
        self, prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        """The integration tier's make_topic, outside pytest: unique name, deleted at close."""
        name = f"chaos.{prefix}.{uuid.uuid4().hex[:10]}"
        futures = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=60)
        self.topics.append(name)
        return name

    def close_runs(self) -> None:
        """Stop every worker, feeder and reader any scenario started (also on Ctrl-C)."""
        for run in self.runs:
            run.close()
        self.runs.clear()

    def close(self) -> None:
        self.close_runs()
        self.rss.close()
        if self.topics:
            for fut in self.admin.delete_topics(self.topics).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)
            self.topics.clear()


def _artifact_policy(artifact: Path) -> RoutingPolicy | None:
    """The policy the worker derives from the artifact (defaults otherwise)."""
    try:
        manifest = json.loads((artifact / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return RoutingPolicy(
        manifest.get("min_action_confidence", DEFAULT_MIN_ACTION_CONFIDENCE),
        max_unfamiliarity=(manifest.get("ood") or {}).get("threshold"),
    )


class Run:
    """One topic set with its inputs, its workers, its reader and its fault log."""

    def __init__(
        self,
        ctx: Ctx,
        name: str,
        *,
        partitions: int,
        module: str = "worker.cli",
        extra_env: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        self.ctx, self.name = ctx, name
        self.closed = False
        ctx.runs.append(self)  # closed by ctx.close_runs() whatever happens next
        self.topics = make_topics(ctx.make_topic, partitions)
        self.faults = FaultLog(name)
        self.inputs = Inputs()
        t = self.topics
        self.tail = CommittedTail(
            ctx.bootstrap,
            {t.escalate: "escalate", t.auto_resolve: "auto_resolve", t.more_info: "more_info"},
            t.dlq,
        )
        self.fleet = Fleet(
            ctx.bootstrap,
            t,
            ctx.artifact,
            ctx.out_dir / "logs" / ctx.run_id / name,
            group=f"chaos-{ctx.run_id}-{name}-{uuid.uuid4().hex[:4]}",
            faults=self.faults,
            rss=ctx.rss,
            module=module,
            extra_env=extra_env,
            **settings,
        )
        self.feeder = Feeder(ctx.bootstrap, t.inbound, self.inputs)
        self.checks: list[dict[str, Any]] = []
        self.restarts_left = 0
        # Log events of a deliberate exit that a supervisor (Kubernetes) restarts: allowed
        # where a scenario expects them, e.g. the watchdog ending a hung librdkafka call.
        self.deliberate_exits: frozenset[str] = frozenset()
        self.started = time.monotonic()
        self.stacks: dict[str, str] = {}  # py-spy dumps of workers that hung
        # Stop at the end with more than the workers' own grace, to see them honour it.
        self.grace_s = float(settings.get("SHUTDOWN_GRACE_S", 30)) + 10

    def check(self, name: str, ok: bool, detail: str = "", required: bool = True) -> bool:
        """A scenario check; one that is not ``required`` is reported, not part of the verdict."""
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail, "required": required})
        return ok

    # -- waiting ------------------------------------------------------------------------

    def outstanding(self) -> int:
        """Delivered inputs that have no committed output yet."""
        seen = {o.source for o in self.tail.snapshot() if o.source is not None}
        return sum((s.partition, s.offset) not in seen for s in self.inputs.delivered())

    def supervise(self) -> None:
        """Restart replicas that died by themselves while restarts are left (deaths count)."""
        for name in self.fleet.poll():
            if self.restarts_left > 0:
                self.restarts_left -= 1
                self.fleet.start(name)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.supervise()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def wait_all_out(self, timeout: float, stall_s: float = 60) -> bool:
        """Until every delivered input has an output (and production ended). False on timeout,
        or when nothing new came out for stall_s after production ended (the run stays
        bounded when the workers hang), after recording the stacks of the workers."""
        deadline = time.monotonic() + timeout
        last, moved = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.supervise()
            left = self.outstanding()
            if not self.feeder.running() and left == 0:
                return True
            if left != last or self.feeder.running():
                last, moved = left, time.monotonic()
            elif time.monotonic() - moved > stall_s:
                self.check("outputs kept coming", False, f"none for {stall_s:.0f}s, {left} left")
                break
            time.sleep(0.5)
        self.stacks.update(
            {f"{n} (waiting for outputs)": st for n, st in self.fleet.dump_running().items()}
        )
        return False

    def ready(self, *names: str, timeout: float = 120) -> bool:
        return all(self.fleet.wait_ready(n, timeout) for n in names)

    # -- the end --------------------------------------------------------------------------

    def finish(self, drain_timeout: float = 60) -> tuple[Accounting, dict[str, Any]]:
        """Stop workers, read every output to the end, account; closes this run."""
        self.feeder.stop()
        codes = self.fleet.stop_all(self.grace_s)
        self.check(
            "every worker stops on SIGTERM at the end",
            all(c is not None for c in codes.values()),
            ", ".join(f"{n}: exit {c}" for n, c in codes.items()),
        )
        self.stacks.update({f"{n} (ignored SIGTERM)": st for n, st in self.fleet.stuck.items()})
        drained = self.tail.drain(drain_timeout)
        self.check("reader read every output partition to its end", drained)
        outs = self.tail.snapshot()
        acc = account(self.inputs, outs, self.ctx.policy)
        rec = recovery(self.faults.events, outs)
        undelivered = self.inputs.undelivered()
        extra = {
            "counts": {**acc.counts(), "not_delivered": len(undelivered)},
            "examples": acc.examples(),
            "recovery": rec,
            "workers": self.fleet.summary(),
            "peak_rss_mib": {
                n: r["peak_rss_mib"] for n, r in self.fleet.summary()["replicas"].items()
            },
            "reader_errors": self.tail.errors[:10],
            "stacks": self.stacks,
            "topics": self.topics.__dict__,
        }

        def deliberate(death: dict[str, Any]) -> str:
            events = [e for e in self.deliberate_exits if f'"event": "{e}"' in death["tail"]]
            return events[0] if events and (death["exit_code"] or 0) > 0 else ""

        unplanned = [d for d in self.fleet.deaths if not deliberate(d)]
        self.check(
            "no worker died by itself",
            not unplanned,
            "; ".join(f"{d['replica']} exit {d['exit_code']}" for d in unplanned),
        )
        planned = [d for d in self.fleet.deaths if deliberate(d)]
        if planned:
            self.check(
                "deliberate exits (one log line, non-zero), restarted as a supervisor would",
                True,
                "; ".join(f"{d['replica']}: {deliberate(d)}" for d in planned),
                required=False,
            )
        self.close()
        return acc, extra

    def close(self) -> None:
        """Idempotent, and safe on a Run whose __init__ failed part-way."""
        if self.closed:
            return
        self.closed = True
        feeder, fleet, tail = (getattr(self, n, None) for n in ("feeder", "fleet", "tail"))
        if feeder is not None:
            with contextlib.suppress(Exception):
                feeder.stop()
        if fleet is not None:
            fleet.kill_all()
        if tail is not None:
            tail.close()


def _result(
    run: Run,
    about: str,
    params: dict[str, Any],
    acc: Accounting,
    extra: dict[str, Any],
    fault_summary: str,
) -> dict[str, Any]:
    passed = acc.ok() and all(c["ok"] for c in run.checks if c.get("required", True))
    return {
        "scenario": run.name,
        "about": about,
        "passed": passed,
        "params": params,
        "checks": run.checks,
        "fault_summary": fault_summary,
        **extra,
        "seconds": round(time.monotonic() - run.started, 1),
        "tails": {} if passed else run.fleet.log_tails(),
    }


# == 1. crash storm ============================================================================


def crash_storm(ctx: Ctx) -> dict[str, Any]:
    n, rate, every, min_kills = (2000, 100, 5.0, 3) if ctx.short else (30000, 400, 5.0, 10)
    run = Run(ctx, "crash-storm", partitions=6)
    names = ["r0", "r1", "r2"]
    run.restarts_left = 5
    for name in names:
        run.fleet.start(name)
    run.ready(*names)
    run.feeder.steady(mixed("cs", bad_every=97), n, rate)
    kills = 0
    next_kill = time.monotonic() + every
    while run.feeder.running():
        run.sleep(0.2)
        if time.monotonic() < next_kill:
            continue
        ready = [x for x in run.fleet.running() if run.fleet.ready_now(x)]
        victim = ctx.rng.choice(ready or run.fleet.running() or names)
        run.fleet.kill(victim)
        kills += 1
        run.sleep(1.0)
        run.fleet.start(victim)
        next_kill = time.monotonic() + every
    done = run.wait_all_out(60 if ctx.short else 180)
    run.check("every input has an output before the deadline", done)
    run.check(f"at least {min_kills} SIGKILLs", kills >= min_kills, f"{kills} kills")
    acc, extra = run.finish()
    return _result(
        run,
        "3 replicas, 6 partitions, steady production, a random replica "
        "SIGKILLed every few seconds and restarted with its transactional.id.",
        {"messages": n, "rate": rate, "kill_every_s": every},
        acc,
        extra,
        f"{kills} SIGKILL + restart",
    )


# == 2. broker hard kill / freeze ==============================================================


def _after_broker_fault(
    run: Run, ctx: Ctx, producing_s: float
) -> tuple[Accounting, dict[str, Any]]:
    """Let production end, wait for every output, and account."""
    run.feeder.join(producing_s + 120)
    done = run.wait_all_out(90 if ctx.short else 240)
    run.check("every input has an output before the deadline", done)
    return run.finish(drain_timeout=45)


def broker_restart(ctx: Ctx) -> dict[str, Any]:
    assert ctx.broker is not None
    n, rate, at, down = (1500, 60, 8.0, 3.0) if ctx.short else (10000, 150, 20.0, 5.0)
    run = Run(ctx, "broker-restart", partitions=4)
    run.restarts_left = 3  # a worker that exits is restarted, as Kubernetes would
    # librdkafka#5456/#5511: send_offsets_to_transaction can block forever after the
    # coordinator restarts; the worker's watchdog then exits 1 (worker/watchdog.py).
    run.deliberate_exits = frozenset({"kafka_call_hung"})
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    run.feeder.steady(mixed("br", bad_every=50), n, rate)
    run.sleep(at)
    run.faults.add("broker-kill", f"SIGKILL pid {ctx.broker.pid()}")
    ctx.broker.kill()
    run.sleep(down)
    ok = True
    try:
        ctx.broker.relaunch()
    except subprocess.CalledProcessError as exc:
        ok = False
        run.check("broker relaunched on the same data dir and port", False, str(exc))
    run.faults.add("broker-back", ctx.broker.addr)
    if ok:
        run.check("broker relaunched on the same data dir and port", ok, ctx.broker.addr)
    acc, extra = _after_broker_fault(run, ctx, n / rate)
    return _result(
        run,
        "2 replicas under steady load; the broker is SIGKILLed and relaunched "
        "on the same data dir and port.",
        {"messages": n, "rate": rate, "kill_at_s": at, "down_s": down},
        acc,
        extra,
        "broker SIGKILL + relaunch",
    )


def broker_freeze(ctx: Ctx) -> dict[str, Any]:
    assert ctx.broker is not None
    commit_timeout = 5
    n, rate, at, frozen = (1500, 60, 8.0, 12.0) if ctx.short else (10000, 150, 20.0, 20.0)
    run = Run(ctx, "broker-freeze", partitions=4, COMMIT_TIMEOUT_S=str(commit_timeout))
    run.restarts_left = 3
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    run.feeder.steady(mixed("bf", bad_every=50), n, rate)
    run.sleep(at)
    run.faults.note(
        "broker-freeze", f"SIGSTOP for {frozen:.0f}s (commit_timeout_s {commit_timeout})"
    )
    ctx.broker.freeze()
    try:
        run.sleep(frozen)
    finally:
        ctx.broker.thaw()
    run.faults.add("broker-thaw", "SIGCONT")
    acc, extra = _after_broker_fault(run, ctx, n / rate)
    return _result(
        run,
        "2 replicas under steady load; the broker is SIGSTOPped for longer than "
        "the worker's commit_timeout_s, then SIGCONTinued.",
        {"messages": n, "rate": rate, "freeze_s": frozen, "commit_timeout_s": commit_timeout},
        acc,
        extra,
        f"broker frozen {frozen:.0f}s",
    )


# == 3. scale 1 -> 3 -> 1 ======================================================================


def scale(ctx: Ctx) -> dict[str, Any]:
    n, rate, grace = (1500, 75, 20) if ctx.short else (12000, 200, 30)
    run = Run(ctx, "scale", partitions=6, SHUTDOWN_GRACE_S=str(grace))
    run.fleet.start("r0")
    run.ready("r0")
    run.feeder.steady(mixed("sc", bad_every=60), n, rate)
    duration = n / rate
    run.sleep(0.25 * duration)
    run.faults.add("scale-up", "1 -> 3")
    run.fleet.start("r1")
    run.fleet.start("r2")
    run.sleep(0.4 * duration)
    run.faults.add("scale-down", "3 -> 1")
    for name in ("r1", "r2"):
        code, took = run.fleet.sigterm(name, grace + 5)
        run.check(
            f"{name} exits 0 within its grace on scale-down",
            code == 0 and took <= grace,
            f"exit {code} after {took:.1f}s",
        )
        if code is None:
            run.fleet.kill(name)
    done = run.wait_all_out(60 if ctx.short else 180)
    run.check("every input has an output before the deadline", done)
    acc, extra = run.finish()
    return _result(
        run,
        "Steady production while the group scales 1 -> 3 -> 1 (SIGTERM).",
        {"messages": n, "rate": rate},
        acc,
        extra,
        "scale 1->3->1",
    )


# == 4. SIGTERM under backlog ==================================================================


def sigterm_backlog(ctx: Ctx) -> dict[str, Any]:
    n, grace = (2000, 20) if ctx.short else (8000, 20)
    run = Run(
        ctx,
        "sigterm-backlog",
        partitions=4,
        BATCHING__MAX_BATCH_SIZE="16",
        SHUTDOWN_GRACE_S=str(grace),
    )
    stream = mixed("sb", bad_every=40)
    run.feeder.send_all(next(stream) for _ in range(n))
    run.fleet.start("r0")
    run.ready("r0")
    life = run.fleet.replicas["r0"].current
    assert life is not None
    life.worker.wait_batches(int(0.4 * n / 16))  # mid-backlog, several partitions in
    code, took = run.fleet.sigterm("r0", grace + 10)
    run.check(
        "exit 0 within the shutdown grace",
        code == 0 and took <= grace,
        f"exit {code} after {took:.1f}s, grace {grace}s",
    )
    if code is None:
        run.fleet.kill("r0")
    run.tail.drain(30, quiet_s=1.0)
    outs = run.tail.snapshot()
    offsets: dict[int, list[int]] = defaultdict(list)
    for o in outs:
        if o.source is not None:
            offsets[o.source[0]].append(o.source[1])
    gaps = [
        f"in[{p}]: {len(v)} outputs, offsets {min(v)}..{max(v)}"
        for p, v in sorted(offsets.items())
        if sorted(v) != list(range(len(v)))
    ]
    done = sum(len(v) for v in offsets.values())
    run.check(
        "committed outputs are a gap-free prefix per inbound partition",
        not gaps,
        "; ".join(gaps[:4]) or f"{done} outputs over {len(offsets)} partitions",
    )
    run.check("stopped mid-backlog (0 < committed < produced)", 0 < done < n, f"{done} of {n}")
    run.faults.add("restart", "r0 again, to finish the backlog")
    run.fleet.start("r0")
    finished = run.wait_all_out(60 if ctx.short else 120)
    run.check("every input has an output after the restart", finished)
    acc, extra = run.finish()
    return _result(
        run,
        "A backlog, one worker SIGTERMed mid-way: exit 0 within its grace, a "
        "gap-free prefix committed per partition; then a restart finishes it "
        "exactly once.",
        {"messages": n, "grace_s": grace},
        acc,
        extra,
        "SIGTERM + restart",
    )


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


# == 6. model faults ===========================================================================


def model_fault(ctx: Ctx) -> dict[str, Any]:
    n = 1000 if ctx.short else 5000

    def mark(i: int) -> Record | None:
        if i % 50 != 25:
            return None
        rec = good(
            i,
            "mf",
            text=f"{FAIL_MARKER} my card was declined",
            kind="fail",
            expect=frozenset({"dlq:infer"}),
        )
        return rec

    run = Run(
        ctx,
        "model-fault",
        partitions=2,
        module=FAULTY,
        extra_env={"CHAOS_FAIL_MARKER": FAIL_MARKER},
    )
    stream = mixed("mf", bad_every=61, mark=mark)
    run.feeder.send_all(next(stream) for _ in range(n))
    run.fleet.start("r0")
    run.ready("r0")
    done = run.wait_all_out(60 if ctx.short else 120)
    run.check("every input has an output before the deadline", done)
    acc, extra = run.finish()
    marked = sum(s.kind == "fail" for s in run.inputs.sent)
    return _result(
        run,
        f"The model fails every forward pass holding a '{FAIL_MARKER}' text "
        "(tests/chaos/faulty_worker.py): only those messages are dead-lettered, "
        "stage infer.",
        {"messages": n, "marked": marked},
        acc,
        extra,
        f"{marked} marked messages",
    )


def model_down(ctx: Ctx) -> dict[str, Any]:
    n, wait_exit = (500, 45) if ctx.short else (2000, 90)
    run = Run(ctx, "model-down", partitions=2, module=FAULTY, extra_env={"CHAOS_FAIL_ALL": "1"})
    # The failing replica's exit 4 is what the circuit breaker is for, not a crash.
    run.deliberate_exits = frozenset({"model_broken"})
    stream = mixed("md", nonempty=True)  # every message needs the model
    run.feeder.send_all(next(stream) for _ in range(n))
    run.fleet.start("bad")
    run.ready("bad")
    run.faults.add("model-down", "every forward pass fails from now")
    life = run.fleet.replicas["bad"].current
    assert life is not None
    not_ready_seen = False
    deadline = time.monotonic() + wait_exit
    while time.monotonic() < deadline and "bad" in run.fleet.running():
        if life.worker.get("/readyz")[0] == 503:
            not_ready_seen = True
        time.sleep(0.05)
    exited = "bad" not in run.fleet.running()
    code = life.exit_code
    if not exited:
        run.fleet.kill("bad")
    run.check(
        f"the failing replica exits non-zero within {wait_exit}s",
        exited and code != 0,
        f"exit {code}" if exited else "still running: killed",
    )
    # Not part of the verdict: a breaker that exits within ~50 ms of turning not-ready is
    # right, and its 503 cannot be seen from outside (its exit is, and is checked above).
    run.check(
        "it reported not ready (/readyz 503) before exiting",
        not_ready_seen,
        "seen" if not_ready_seen else "not seen in 50 ms samples (it may exit sooner)",
        required=False,
    )
    run.tail.drain(5, quiet_s=1.0)
    before = run.tail.snapshot()
    run.check(
        "it committed nothing (no dead letters, no results)",
        not before,
        f"{sum(o.place.startswith('dlq:') for o in before)} dead letters, "
        f"{sum(not o.place.startswith('dlq:') for o in before)} results",
    )
    run.faults.add("healthy-replica", "a healthy worker joins")
    run.fleet.module = "worker.cli"
    run.fleet.extra_env = {}
    # Same transactional.id as the failing one (its replacement): fences an open transaction
    # it may have left, which would otherwise hide every later output until it times out.
    run.fleet.start("good", txn_id=run.fleet.replicas["bad"].txn_id)
    run.ready("good")
    done = run.wait_all_out(60 if ctx.short else 120)
    run.check("the healthy replica routes every message", done)
    acc, extra = run.finish()
    return _result(
        run,
        "A model that always fails: the circuit breaker must stop committing, "
        "leave the group, report not ready and exit non-zero, with nothing in the "
        "DLQ; then a healthy replica routes everything.",
        {"messages": n, "wait_exit_s": wait_exit},
        acc,
        extra,
        f"model down; failing replica exit {code}",
    )


# == 7. slow model =============================================================================


def slow_model(ctx: Ctx) -> dict[str, Any]:
    n, rate, every, dense = (800, 40, 200, 100) if ctx.short else (3000, 100, 500, 250)
    slow_s, max_poll = 8, 6000
    # Around the join, slow texts come often enough that r0 is in a slow forward pass
    # (so inside its wait that keeps the membership) when the group rebalances.
    window = threading.Event()

    def mark(i: int) -> Record | None:
        if i % every != every // 2 and not (window.is_set() and i % dense == 0):
            return None
        return good(i, "sm", text=f"{SLOW_MARKER} where is my refund", kind="slow")

    run = Run(
        ctx,
        "slow-model",
        partitions=4,
        module=FAULTY,
        extra_env={"CHAOS_SLOW_MARKER": SLOW_MARKER, "CHAOS_SLOW_S": str(slow_s)},
        MAX_POLL_INTERVAL_MS=str(max_poll),
    )
    run.restarts_left = 2
    run.fleet.start("r0")
    run.ready("r0")
    run.feeder.steady(mixed("sm", bad_every=70, mark=mark), n, rate)
    run.sleep(0.3 * n / rate)
    window.set()
    run.faults.add("replica-joins", "r1 joins mid-run")
    run.fleet.start("r1")
    run.ready("r1")
    run.sleep(slow_s)
    window.clear()
    run.feeder.join(n / rate + 120)
    done = run.wait_all_out(150 if ctx.short else 300)
    run.check("every input has an output before the deadline", done)
    overlaps, paused = _revokes_in_slow_passes(run, "r0", slow_s)
    run.check(
        "a rebalance hit r0 inside a slow forward pass (the case under test)",
        overlaps > 0,
        f"{overlaps} revokes during {paused} slow passes that polled paused",
    )
    acc, extra = run.finish()
    slow = sum(s.kind == "slow" for s in run.inputs.sent)
    return _result(
        run,
        f"Forward passes holding a '{SLOW_MARKER}' text sleep {slow_s}s, longer "
        f"than max.poll.interval.ms={max_poll}; a second replica joins mid-run, while the "
        "first is in one.",
        {
            "messages": n,
            "rate": rate,
            "slow_texts": slow,
            "slow_s": slow_s,
            "max_poll_interval_ms": max_poll,
        },
        acc,
        extra,
        f"{slow} slow texts, 1 join",
    )


def _revokes_in_slow_passes(run: Run, name: str, slow_s: float) -> tuple[int, int]:
    """(partitions_revoked within a slow pass of ``name``, slow passes), from its logs."""
    starts, revokes = [], []
    for life in run.fleet.replicas[name].lives:
        for e in life.worker.log_lines():
            ts = e.get("timestamp")
            if not isinstance(ts, str):
                continue
            at = datetime.fromisoformat(ts).timestamp()
            if e.get("event") == "slow_inference_polling_paused":
                starts.append(at)
            elif e.get("event") in ("partitions_revoked", "partitions_lost"):
                revokes.append(at)
    hits = sum(any(s <= r <= s + slow_s for s in starts) for r in revokes)
    return hits, len(starts)


# == 8. what a SIGKILLed replica's open transaction costs, per transactional.id scheme ==========


def txn_id(ctx: Ctx) -> dict[str, Any]:
    """Kill a replica mid-transaction twice: restarted with the same id, then with a fresh one.

    A read_committed reader sees nothing past the killed replica's open transaction
    until it is aborted: at once by the restarted replica's init_transactions() when the
    id is the same (a StatefulSet pod name), or only by the coordinator after
    transaction_timeout_ms when every process has a fresh id.
    """
    txn_timeout_s = 20
    n, rate = (1500, 50) if ctx.short else (3000, 50)
    # Each commit waits 1.5 s with its records already on the broker, so the kill lands
    # inside an open transaction (a plain worker is inside one only for milliseconds).
    run = Run(
        ctx,
        "txn-id",
        partitions=2,
        module=FAULTY,
        extra_env={"CHAOS_COMMIT_DELAY_S": "1.5"},
        TRANSACTION_TIMEOUT_MS=str(txn_timeout_s * 1000),
    )
    run.fleet.start("r0")
    run.ready("r0")
    run.feeder.steady(mixed("tx"), n, rate)
    run.sleep(8)
    run.faults.add("kill-same-id", "r0 SIGKILL, restarted with its transactional.id")
    run.fleet.kill("r0")
    run.fleet.start("r0")
    run.sleep(txn_timeout_s + 15)
    run.faults.add("kill-fresh-id", "r0 SIGKILL, replaced by r1 with a new transactional.id")
    run.fleet.kill("r0")
    run.fleet.start("r1", txn_id=f"{run.fleet.group}-fresh")
    run.feeder.join(n / rate + 60)
    done = run.wait_all_out(120)
    run.check("every input has an output before the deadline", done)
    acc, extra = run.finish()
    # From the kill to the first output read more than 1 s after it: whatever the killed
    # replica committed just before is read within milliseconds, so this is the new one's.
    arrivals = sorted(o.arrived for o in run.tail.snapshot())
    kills = {f.kind: f.at for f in run.faults.events if f.kind.startswith("kill-")}

    def stall(kind: str) -> float | None:
        at = kills.get(kind)
        later = [t for t in arrivals if at is not None and t > at + 1.0]
        return round(later[0] - at, 2) if later and at is not None else None

    same, fresh = stall("kill-same-id"), stall("kill-fresh-id")
    run.check(
        "read_committed stall after a kill: same id well below the transaction timeout",
        same is not None and same < txn_timeout_s,
        f"same id {same}s, fresh id {fresh}s, transaction_timeout_ms {txn_timeout_s * 1000}",
    )
    run.check(
        "a fresh id waits for the transaction timeout (informational)",
        fresh is not None and fresh >= txn_timeout_s * 0.8,
        f"{fresh}s",
        required=False,
    )
    return _result(
        run,
        "One replica under steady load, SIGKILLed mid-transaction twice: restarted with its "
        "own transactional.id, then replaced by a process with a fresh one. The figure is "
        "the time from the kill to the next output a read_committed reader sees.",
        {"messages": n, "rate": rate, "transaction_timeout_ms": txn_timeout_s * 1000},
        acc,
        {**extra, "stall_s": {"same_id": same, "fresh_id": fresh}},
        "2 SIGKILL: same id, fresh id",
    )


# == 9. peak RSS against the message count ====================================================


def memory(ctx: Ctx) -> dict[str, Any]:
    """One worker through 10k messages, then a fresh one through 50k: peak RSS must not grow."""
    small, large = (1000, 5000) if ctx.short else (10000, 50000)
    run = Run(ctx, "memory", partitions=4)
    stream = mixed("mem", bad_every=100)
    peaks = {}
    for name, n in (("r10k", small), ("r50k", large)):
        run.feeder.send_all((next(stream) for _ in range(n)), timeout=120)
        run.fleet.start(name)
        run.ready(name)
        done = run.wait_all_out(600)
        run.check(f"{name}: every input has an output", done)
        run.fleet.sigterm(name, run.grace_s)
        peaks[name] = run.fleet.summary()["replicas"][name]["peak_rss_mib"]
    ratio = peaks["r50k"] / peaks["r10k"] if peaks.get("r10k") else None
    run.check(
        f"peak RSS at {large} messages within 10% of that at {small}",
        ratio is not None and ratio <= 1.10,
        f"{peaks.get('r10k')} MiB vs {peaks.get('r50k')} MiB (x{ratio:.3f})" if ratio else "",
    )
    acc, extra = run.finish()
    return _result(
        run,
        f"A fresh worker through {small} preloaded messages, then another through {large}; "
        "peak RSS (VmHWM) of each.",
        {"messages": [small, large]},
        acc,
        {
            **extra,
            "peak_rss_mib_by_count": {str(small): peaks.get("r10k"), str(large): peaks.get("r50k")},
        },
        f"{small} then {large} messages",
    )


SCENARIOS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "crash-storm": crash_storm,
    "broker-restart": broker_restart,
    "broker-freeze": broker_freeze,
    "scale": scale,
    "sigterm-backlog": sigterm_backlog,
    "poison": poison,
    "model-fault": model_fault,
    "model-down": model_down,
    "slow-model": slow_model,
    "txn-id": txn_id,
    "memory": memory,
}


def run_scenario(ctx: Ctx, name: str) -> dict[str, Any]:
    """One scenario, whatever happens: an exception is a failed result, and cleanup runs."""
    print(f"== {name} ({'short' if ctx.short else 'full'})", flush=True)
    started = time.monotonic()
    if name in OWN_BROKER and ctx.broker is None:
        return {
            "scenario": name,
            "passed": True,
            "skipped": True,
            "checks": [],
            "about": "skipped: needs the run's own broker (not --bootstrap)",
            "fault_summary": "skipped",
            "seconds": 0.0,
        }
    try:
        result = SCENARIOS[name](ctx)
    except Exception as exc:
        result = {
            "scenario": name,
            "passed": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "checks": [],
            "fault_summary": "-",
            "seconds": round(time.monotonic() - started, 1),
        }
        tails = {}
        for run in ctx.runs:
            tails.update({f"{run.name}/{k}": v for k, v in run.fleet.log_tails().items()})
        result["tails"] = tails
    finally:
        ctx.close_runs()
    print(f"   {summary_line(result)}", flush=True)
    return result


def summary_line(r: dict[str, Any]) -> str:
    c = r.get("counts") or {}
    verdict = "SKIP" if r.get("skipped") else ("PASS" if r["passed"] else "FAIL")
    failed = [ch["name"] for ch in r.get("checks", []) if not ch["ok"] and ch.get("required", True)]
    rec = (r.get("recovery") or {}).get("longest_s")
    return (
        f"{r['scenario']}: {verdict} in={c.get('in', '-')} out={c.get('out', '-')} "
        f"missing={c.get('missing', '-')} duplicated={c.get('duplicated', '-')} "
        f"wrong={c.get('wrong_place', '-')} faults=[{r.get('fault_summary', '-')}] "
        f"recovery={rec}s {r.get('seconds', 0):.0f}s"
        + (f" error={r['error']}" if r.get("error") else "")
        + (f" failed={failed}" if failed else "")
    )


def scenario_names(requested: list[str] | None, short: bool) -> list[str]:
    return list(requested) if requested else list(SHORT_SET if short else ALL)


def iter_failures(r: dict[str, Any]) -> Iterator[str]:
    """Readable reasons a result failed, for a pytest assertion message."""
    if r.get("error"):
        yield f"error: {r['error']}\n{r.get('traceback', '')}"
    for ch in r.get("checks", []):
        if not ch["ok"] and ch.get("required", True):
            yield f"check failed: {ch['name']} ({ch.get('detail', '')})"
    c = r.get("counts") or {}
    for k in ("missing", "duplicated", "wrong_place", "unmatched_out"):
        if c.get(k):
            yield f"{k} = {c[k]}, e.g. {(r.get('examples') or {}).get(k, [])[:5]}"
    for name, tail in (r.get("tails") or {}).items():
        yield f"--- log tail {name}\n{tail}"
