"""Chaos scenarios of the network between the workers and the brokers (`--brokers 3` with
Toxiproxy, tests/chaos/toxiproxy.py): added latency, every connection reset, a blackhole.

The workers bootstrap at the proxies, one in front of each broker's EXTERNAL listener; the
feeder, the read_committed reader and replication between the brokers go around them, so
only the workers' traffic meets the fault.
"""

from __future__ import annotations

from typing import Any

from tests.chaos.report import Accounting
from tests.chaos.scenarios.common import HUNG_CALL, Ctx, Run, _result
from tests.chaos.toxiproxy import Toxiproxy
from tests.chaos.workload import mixed


def _proxy(ctx: Ctx) -> tuple[Toxiproxy, str]:
    assert ctx.proxy is not None and ctx.proxy_bootstrap, "needs --brokers 3 and Toxiproxy"
    return ctx.proxy, ctx.proxy_bootstrap


def _start(ctx: Ctx, name: str, prefix: str, n: int, rate: float) -> Run:
    proxy, through = _proxy(ctx)
    proxy.reset()
    run = Run(ctx, name, partitions=4, worker_bootstrap=through)
    run.restarts_left = 3
    run.deliberate_exits = HUNG_CALL
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    run.feeder.steady(mixed(prefix, bad_every=50), n, rate)
    return run


def _settle(run: Run, ctx: Ctx, producing_s: float) -> tuple[Accounting, dict[str, Any]]:
    run.feeder.join(producing_s + 120)
    done = run.wait_all_out(90 if ctx.short else 240)
    run.check("every input has an output before the deadline", done)
    return run.finish(drain_timeout=45)


def _outputs_between(run: Run, start: float, end: float) -> int:
    return sum(start < o.arrived <= end for o in run.tail.snapshot())


# == latency ===================================================================================


def net_latency(ctx: Ctx) -> dict[str, Any]:
    proxy, _ = _proxy(ctx)
    n, rate, at, lasting = (1500, 50, 6.0, 12.0) if ctx.short else (4000, 100, 8.0, 20.0)
    latency, jitter = 300, 100
    run = _start(ctx, "net-latency", "nl", n, rate)
    run.sleep(at)
    on = run.faults.add(
        "latency-on", f"+{latency}±{jitter} ms each way on every worker-broker connection"
    )
    attrs = {"latency": latency, "jitter": jitter}
    proxy.add_toxic("latency-up", "latency", "upstream", attrs)
    proxy.add_toxic("latency-down", "latency", "downstream", attrs)
    try:
        run.sleep(lasting)
    finally:
        proxy.remove_toxic("latency-up")
        proxy.remove_toxic("latency-down")
    off = run.faults.add("latency-off", "toxics removed")
    during = _outputs_between(run, on.at, off.at)
    run.check(
        "outputs kept committing under the latency",
        during > 0,
        f"{during} outputs in the {lasting:.0f} s",
    )
    acc, extra = _settle(run, ctx, n / rate)
    return _result(
        run,
        f"2 replicas under steady load, connected through Toxiproxy; {latency} ms "
        f"(jitter {jitter}) is added to each direction of every worker-broker connection "
        f"for {lasting:.0f} s (a transaction takes several round trips).",
        {"messages": n, "rate": rate, "latency_ms": latency, "jitter_ms": jitter},
        acc,
        {**extra, "outputs_during_fault": during},
        f"+{latency} ms each way for {lasting:.0f}s",
    )


# == connection reset ==========================================================================


def net_reset(ctx: Ctx) -> dict[str, Any]:
    proxy, _ = _proxy(ctx)
    n, rate, at, gap = (1500, 50, 6.0, 8.0) if ctx.short else (4000, 100, 8.0, 10.0)
    window = 2.0
    run = _start(ctx, "net-reset", "nr", n, rate)
    run.sleep(at)
    for i in range(2):
        run.faults.add(
            "connection-reset", f"#{i + 1}: TCP RST on every worker connection that sends"
        )
        # reset_peer with timeout 0: a connection is reset (SO_LINGER 0) as soon as the
        # worker sends on it; within the window every connection, and each reconnect, does.
        proxy.add_toxic("reset", "reset_peer", "upstream", {"timeout": 0})
        try:
            run.sleep(window)
        finally:
            proxy.remove_toxic("reset")
        run.sleep(gap)
    acc, extra = _settle(run, ctx, n / rate)
    return _result(
        run,
        "2 replicas under steady load, through Toxiproxy; twice, for "
        f"{window:.0f} s, every connection from a worker to a broker is reset (TCP RST) as "
        "soon as the worker sends on it, reconnects included.",
        {"messages": n, "rate": rate, "window_s": window},
        acc,
        extra,
        "2 resets of every connection",
    )


# == blackhole =================================================================================


def net_blackhole(ctx: Ctx) -> dict[str, Any]:
    proxy, _ = _proxy(ctx)
    n, rate, at, lasting = (1500, 40, 6.0, 30.0) if ctx.short else (4000, 60, 8.0, 30.0)
    run = _start(ctx, "net-blackhole", "nb", n, rate)
    run.sleep(at)
    run.faults.note(
        "blackhole-on", f"every byte between workers and brokers dropped for {lasting:.0f}s"
    )
    # The timeout toxic with timeout 0 drops all data and keeps the connections open
    # (new ones too: the proxy accepts, nothing passes); removing it closes each
    # connection it held (its Cleanup), so the clients reconnect.
    proxy.add_toxic("blackhole-up", "timeout", "upstream", {"timeout": 0})
    proxy.add_toxic("blackhole-down", "timeout", "downstream", {"timeout": 0})
    try:
        run.sleep(lasting)
    finally:
        proxy.remove_toxic("blackhole-up")
        proxy.remove_toxic("blackhole-down")
    run.faults.add("blackhole-off", "toxics removed; the connections they held are closed")
    acc, extra = _settle(run, ctx, n / rate)
    return _result(
        run,
        "2 replicas under steady load, through Toxiproxy; for "
        f"{lasting:.0f} s nothing passes between the workers and any broker (longer than "
        "session.timeout.ms, 6 s here: the group loses both members), then the network is "
        "back.",
        {"messages": n, "rate": rate, "blackhole_s": lasting},
        acc,
        extra,
        f"blackhole {lasting:.0f}s",
    )
