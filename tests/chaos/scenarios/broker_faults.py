"""Chaos scenarios of broker faults: the broker SIGKILLed and relaunched, or SIGSTOPped.

On the three-node cluster (--brokers 3) both act on every node at once: the whole cluster
killed, or frozen. Faults of one node are in cluster_faults.py."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.chaos.report import Accounting
from tests.chaos.scenarios.common import Ctx, Run, _result
from tests.chaos.workload import mixed

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
    # coordinator restarts; the worker's watchdog then exits 1 (worker/kafka/watchdog.py).
    run.deliberate_exits = frozenset({"kafka_call_hung"})
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    run.feeder.steady(mixed("br", bad_every=50), n, rate)
    run.sleep(at)
    run.faults.add("broker-kill", f"SIGKILL {ctx.broker.what()}")
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
        "on the same data dir and port." + ctx.broker.scope_note,
        {"messages": n, "rate": rate, "kill_at_s": at, "down_s": down},
        acc,
        extra,
        f"{ctx.broker.label} SIGKILL + relaunch",
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
        "the worker's commit_timeout_s, then SIGCONTinued." + ctx.broker.scope_note,
        {"messages": n, "rate": rate, "freeze_s": frozen, "commit_timeout_s": commit_timeout},
        acc,
        extra,
        f"{ctx.broker.label} frozen {frozen:.0f}s",
    )
