"""Chaos scenarios of model faults (tests/chaos/faulty_worker.py): a model that fails on
marked texts, a model that always fails, and a model slower than max.poll.interval.ms."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from tests.chaos.faulty_worker import FAIL_MARKER, SLOW_MARKER
from tests.chaos.scenarios.common import FAULTY, Ctx, Run, _result
from tests.chaos.workload import Record, good, mixed

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
