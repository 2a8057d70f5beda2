"""Chaos scenarios of one node of the three-node cluster (`--brokers 3`): a partition leader
stopped (SIGTERM) or killed (SIGKILL) and restarted, the transaction coordinator of a
worker's transactional.id killed mid-transaction, a leader frozen (SIGSTOP), and a rolling
restart of every node under load.

Topics have replication factor 3 and min.insync.replicas 2, so with one node down every
partition keeps a leader and every write still lands on two nodes. Each scenario starts
and ends with the whole cluster healthy (every node listed, every ISR full), so the next
fault never meets a node still catching up.

A node's return is logged, not timed: with two nodes left the cluster keeps serving, so
recovery is measured from the fault itself. A worker may exit 1 through its watchdog
(``kafka_call_hung``) when a transactional call hangs after its coordinator's node went
away (librdkafka#5456/#5511, as in broker-restart); it is restarted, as a supervisor would,
and the report lists each such exit.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from tests.chaos.cluster import ChaosCluster
from tests.chaos.coordinator import (
    TXN_STATE,
    group_coordinator,
    observed_coordinator,
    txn_coordinator,
)
from tests.chaos.report import Accounting
from tests.chaos.scenarios.common import FAULTY, HUNG_CALL, Ctx, Run, _result
from tests.chaos.workload import mixed


def _cluster(ctx: Ctx) -> ChaosCluster:
    assert isinstance(ctx.broker, ChaosCluster), "needs --brokers 3"
    return ctx.broker


def _supervised(run: Run) -> Run:
    run.restarts_left = 3
    run.deliberate_exits = HUNG_CALL
    return run


def _healthy(run: Run, cluster: ChaosCluster, when: str) -> float:
    ok, took, problems = cluster.wait_healthy(180, tick=run.supervise)
    run.check(
        f"every node listed and every ISR full {when}",
        ok,
        f"after {took:.1f}s" + (f"; still: {problems}" if problems else ""),
    )
    return took


def _settle(
    run: Run, ctx: Ctx, cluster: ChaosCluster, producing_s: float
) -> tuple[Accounting, dict[str, Any]]:
    """Let production end, wait for every output and a healthy cluster, and account."""
    run.feeder.join(producing_s + 120)
    done = run.wait_all_out(90 if ctx.short else 240)
    run.check("every input has an output before the deadline", done)
    healed = _healthy(run, cluster, "after the fault")
    acc, extra = run.finish(drain_timeout=45)
    return acc, {**extra, "cluster_healthy_after_s": healed}


def _led(cluster: ChaosCluster, run: Run, node: int) -> list[str]:
    """What ``node`` leads of this run: its topics' partitions, the group's coordinator,
    the replicas' transaction coordinators."""
    leaders = cluster.leaders([run.topics.inbound, *run.topics.outputs()])
    led = sorted(f"{t.split('.')[1]}[{p}]" for (t, p), n in leaders.items() if n == node)
    if group_coordinator(cluster.admin, run.fleet.group)[0] == node:
        led.append("the group's coordinator")
    for name, replica in sorted(run.fleet.replicas.items()):
        if txn_coordinator(cluster.admin, replica.txn_id)[0] == node:
            led.append(f"{name}'s transaction coordinator")
    return led


def _leader_moved(
    run: Run, cluster: ChaosCluster, topic: str, partition: int, old: int, timeout: float
) -> float:
    """Seconds until the partition has a leader other than ``old`` (-1 when it did not),
    as the other nodes, asked in turn, say."""
    started = time.monotonic()
    others = itertools.cycle([n.node_id for n in cluster.nodes if n.node_id != old])
    while time.monotonic() - started < timeout:
        try:
            leader = cluster.leader(topic, partition, via=next(others))
        except Exception:
            leader = -1
        if leader not in (-1, old):
            return round(time.monotonic() - started, 1)
        run.sleep(0.25)
    return -1.0


# == a partition leader stopped or killed, then restarted ======================================


def leader_sigterm(ctx: Ctx) -> dict[str, Any]:
    return _leader_down(ctx, "leader-sigterm", clean=True)


def leader_sigkill(ctx: Ctx) -> dict[str, Any]:
    return _leader_down(ctx, "leader-sigkill", clean=False)


def _leader_down(ctx: Ctx, name: str, clean: bool) -> dict[str, Any]:
    cluster = _cluster(ctx)
    n, rate, at, down = (1500, 60, 8.0, 5.0) if ctx.short else (4500, 150, 10.0, 5.0)
    run = _supervised(Run(ctx, name, partitions=4))
    _healthy(run, cluster, "before the fault")
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    run.feeder.steady(mixed("lt" if clean else "lk", bad_every=50), n, rate)
    run.sleep(at)
    victim = cluster.leader(run.topics.inbound, 0)
    led = _led(cluster, run, victim)
    how = "SIGTERM" if clean else "SIGKILL"
    run.faults.add(
        f"leader-{how.lower()}",
        f"{how} node {victim} ({cluster.what(victim)}), leader of {', '.join(led)}",
    )
    if clean:
        took = cluster.stop(victim)
        run.check("the node exits on SIGTERM within 90 s", True, f"{took:.1f}s")
    else:
        cluster.kill(victim)
    moved = _leader_moved(run, cluster, run.topics.inbound, 0, victim, 60)
    run.check(
        "inbound[0] gets another leader while the node is down",
        moved >= 0,
        f"{moved}s after the {how}",
    )
    run.sleep(max(0.0, down - max(moved, 0.0)))
    cluster.relaunch(victim)
    run.faults.note("node-back", f"node {victim} relaunched on its data dir and ports")
    acc, extra = _settle(run, ctx, cluster, n / rate)
    return _result(
        run,
        f"2 replicas under steady load; the node leading inbound partition 0 (and others) "
        f"gets {how}"
        + (" (a controlled shutdown: it hands its leaderships over first)" if clean else "")
        + f", stays down {down:.0f} s, and is relaunched on its data dir and ports.",
        {"messages": n, "rate": rate, "fault_at_s": at, "down_s": down, "victim": victim},
        acc,
        {**extra, "victim_led": led, "leader_moved_s": moved},
        f"leader node {how} + restart",
    )


# == the transaction coordinator killed mid-transaction ========================================


def txn_coordinator_kill(ctx: Ctx) -> dict[str, Any]:
    """SIGKILL the node that coordinates r0's transactional.id while r0's transaction is open.

    r0 holds every commit 1 s with its records already on the brokers (the faulty worker's
    CHAOS_COMMIT_DELAY_S, as in the txn-id scenario), so the kill almost surely lands
    inside an open transaction; the coordinator's state of it lives on in the other
    replicas of its __transaction_state partition, whose new leader takes over.
    """
    cluster = _cluster(ctx)
    n, rate, at, down = (1500, 50, 8.0, 5.0) if ctx.short else (3000, 75, 10.0, 5.0)
    run = _supervised(
        Run(
            ctx,
            "txn-coordinator",
            partitions=4,
            module=FAULTY,
            extra_env={"CHAOS_COMMIT_DELAY_S": "1.0"},
        )
    )
    _healthy(run, cluster, "before the fault")
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    # The hash placement, checked against the coordinator librdkafka finds for probe ids.
    by_addr = {node.addr: node.node_id for node in cluster.nodes}
    probes = {}
    for i in range(3):
        probe = f"{run.fleet.group}-probe{i}"
        found = observed_coordinator(ctx.bootstrap, probe, by_addr)
        probes[probe] = (txn_coordinator(cluster.admin, probe)[0], found)
    run.check(
        "computed coordinator = librdkafka's, for 3 probe ids",
        all(want == got for want, got in probes.values()),
        "; ".join(f"{p[-6:]}: computed {w}, found {g}" for p, (w, g) in probes.items()),
    )
    txn_id = run.fleet.replicas["r0"].txn_id
    run.feeder.steady(mixed("tc", bad_every=50), n, rate)
    run.sleep(at)
    victim, partition = txn_coordinator(cluster.admin, txn_id)
    other = txn_coordinator(cluster.admin, run.fleet.replicas["r1"].txn_id)[0]
    run.faults.add(
        "coordinator-kill",
        f"SIGKILL node {victim} ({cluster.what(victim)}): coordinator of r0's "
        f"transactional.id (__transaction_state[{partition}]); r1's is node {other}",
    )
    cluster.kill(victim)
    moved = _leader_moved(run, cluster, TXN_STATE, partition, victim, 60)
    run.check(
        "the id's __transaction_state partition gets another leader",
        moved >= 0,
        f"{moved}s after the SIGKILL",
    )
    new = txn_coordinator(cluster.admin, txn_id)[0]
    run.sleep(max(0.0, down - max(moved, 0.0)))
    cluster.relaunch(victim)
    run.faults.note("node-back", f"node {victim} relaunched on its data dir and ports")
    acc, extra = _settle(run, ctx, cluster, n / rate)
    return _result(
        run,
        "2 replicas (commits held 1 s, records on the brokers) under steady load; the node "
        "that coordinates r0's transactional.id, found by hash(transactional.id) over "
        "__transaction_state's partitions and that partition's leader, is SIGKILLed inside "
        f"r0's open transaction, down {down:.0f} s, then relaunched.",
        {"messages": n, "rate": rate, "fault_at_s": at, "down_s": down, "victim": victim},
        acc,
        {
            **extra,
            "coordinator": {"old": victim, "new": new, "partition": partition, "moved_s": moved},
            "probes": {p: list(v) for p, v in probes.items()},
        },
        f"coordinator node {victim} SIGKILL (now node {new}) + restart",
    )


# == a leader frozen ===========================================================================


def leader_freeze(ctx: Ctx) -> dict[str, Any]:
    cluster = _cluster(ctx)
    n, rate, at, frozen = (1500, 60, 8.0, 16.0) if ctx.short else (4500, 150, 10.0, 20.0)
    run = _supervised(Run(ctx, "leader-freeze", partitions=4))
    _healthy(run, cluster, "before the fault")
    run.fleet.start("r0")
    run.fleet.start("r1")
    run.ready("r0", "r1")
    run.feeder.steady(mixed("lf", bad_every=50), n, rate)
    run.sleep(at)
    victim = cluster.leader(run.topics.inbound, 0)
    led = _led(cluster, run, victim)
    run.faults.add(
        "leader-freeze",
        f"SIGSTOP node {victim} ({cluster.what(victim)}) for {frozen:.0f}s, "
        f"leader of {', '.join(led)}",
    )
    stopped = time.monotonic()
    cluster.freeze(victim)
    try:
        moved = _leader_moved(run, cluster, run.topics.inbound, 0, victim, frozen - 1)
        run.sleep(max(0.0, stopped + frozen - time.monotonic()))
    finally:
        cluster.thaw(victim)
    run.faults.add("leader-thaw", f"SIGCONT node {victim}")
    run.check(
        "inbound[0] gets another leader while the node is frozen",
        moved >= 0,
        f"{moved}s after the SIGSTOP (broker.session.timeout.ms 9 s fences it)",
    )
    acc, extra = _settle(run, ctx, cluster, n / rate)
    return _result(
        run,
        "2 replicas under steady load; the node leading inbound partition 0 is SIGSTOPped "
        f"for {frozen:.0f} s (longer than broker.session.timeout.ms, 9 s: the controllers "
        "fence it and move its leaderships), then SIGCONTinued; it rejoins as a follower.",
        {"messages": n, "rate": rate, "fault_at_s": at, "freeze_s": frozen, "victim": victim},
        acc,
        {**extra, "victim_led": led, "leader_moved_s": moved},
        f"leader node frozen {frozen:.0f}s",
    )


# == rolling restart ===========================================================================


def rolling_restart(ctx: Ctx) -> dict[str, Any]:
    """Each node in turn: SIGTERM, relaunch, wait until every ISR is full again, then the next
    (as an operator would: a second node down before the first caught up could leave a
    partition with one in-sync copy, below min.insync.replicas)."""
    cluster = _cluster(ctx)
    rate, tail = (50, 5.0) if ctx.short else (100, 5.0)
    run = _supervised(Run(ctx, "rolling-restart", partitions=6))
    _healthy(run, cluster, "before the restart")
    for name in ("r0", "r1", "r2"):
        run.fleet.start(name)
    run.ready("r0", "r1", "r2")
    # Production lasts as long as the restart does, whatever that takes, plus a tail.
    run.feeder.steady(mixed("rr", bad_every=50), rate * 900, rate)
    run.sleep(5.0)
    steps = []
    for node in [x.node_id for x in cluster.nodes]:
        run.faults.add("node-sigterm", f"rolling: node {node} ({cluster.what(node)})")
        stopped = cluster.stop(node)
        cluster.relaunch(node)
        run.faults.note("node-back", f"rolling: node {node} relaunched")
        ok, synced, problems = cluster.wait_healthy(180, tick=run.supervise)
        steps.append({"node": node, "stop_s": round(stopped, 1), "back_in_sync_s": synced})
        run.check(
            f"node {node}: stopped, relaunched, every ISR full again",
            ok,
            f"exit after {stopped:.1f}s, in sync {synced:.1f}s after relaunch"
            + (f"; still: {problems}" if problems else ""),
        )
    run.sleep(tail)
    run.feeder.stop()
    n = run.feeder.produced
    acc, extra = _settle(run, ctx, cluster, 0)
    return _result(
        run,
        f"3 replicas, 6 partitions, {rate} msg/s from 5 s before the first node to "
        f"{tail:.0f} s after the last; every node in turn is SIGTERMed, relaunched, and "
        "followed by the next once every partition's ISR is full again.",
        {"messages": n, "rate": rate},
        acc,
        {**extra, "steps": steps},
        f"rolling restart of {len(steps)} nodes",
    )
