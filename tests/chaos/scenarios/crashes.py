"""Chaos scenarios of crashes and restarts: crash storm, scale 1 -> 3 -> 1, SIGTERM mid-backlog."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from tests.chaos.scenarios.common import Ctx, Run, _result
from tests.chaos.workload import mixed

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
