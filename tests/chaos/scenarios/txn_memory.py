"""Chaos scenarios of transactions and memory: what a SIGKILLed replica's open transaction
costs per transactional.id scheme, and peak RSS against the message count."""

from __future__ import annotations

from typing import Any

from tests.chaos.scenarios.common import FAULTY, Ctx, Run, _result
from tests.chaos.workload import mixed

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
