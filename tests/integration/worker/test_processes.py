"""Two workers under one supervisor (SUPPORT_WORKER_PROCESSES=2) on the real broker.

Each answers on its own admin port and commits with its own transactional.id, the two
share the inbound partitions, every message is routed exactly once across them, and one
SIGTERM to the supervisor drains both (exit 0). The null model keeps it to the framework:
what is under test is the set of processes, not the model.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.integration.worker.harness import (
    WorkerProc,
    make_topics,
    produce,
    read_committed,
    start_worker,
)

PROCESSES = 2


def free_ports(n: int) -> int:
    """A port p with p..p+n-1 free now (the workers bind them a few seconds later)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + n - 1 > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + n):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise AssertionError(f"no {n} consecutive free ports")


def owned(w: WorkerProc) -> dict[int, set[str]]:
    """Partitions each process holds now, from its assign and revoke lines (incremental:
    cooperative-sticky)."""
    held: dict[int, set[str]] = {i: set() for i in range(PROCESSES)}
    for e in w.log_lines():
        if e.get("event") == "partitions_assigned":
            held[e["process"]] |= set(e["partitions"])
        elif e.get("event") == "partitions_revoked":
            held[e["process"]] -= set(e["partitions"])
    return held


def settled(held: dict[int, set[str]], partitions: int) -> bool:
    every = [p for ps in held.values() for p in ps]
    return all(held.values()) and len(every) == len(set(every)) == partitions


def test_two_processes_share_the_partitions_and_route_each_message_once(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = make_topics(make_topic, partitions=4)
    tag = uuid.uuid4().hex[:8]
    base = free_ports(PROCESSES)
    w = start_worker(
        kafka_bootstrap,
        topics,
        tmp_path / "unused",  # the null model reads no artifact
        tmp_path,
        group=f"g-{tag}",
        txn_id=f"t-{tag}",
        PROCESSES=str(PROCESSES),
        MODEL__VARIANT="null",
        ADMIN_PORT=str(base),
        BATCHING__MAX_BATCH_SIZE="32",
    )
    # One view per process of the supervisor's process and log, on that process's port.
    procs = [WorkerProc(w.proc, w.log_path, admin_port=base + i) for i in range(PROCESSES)]
    try:
        for p in procs:
            p.wait_ready()
            assert p.get("/healthz")[0] == 200, p.tail()
        starting = {
            e["process"]: e["settings"] for e in w.log_lines() if e.get("event") == "starting"
        }
        assert {i: s["transactional_id"] for i, s in starting.items()} == {
            i: f"t-{tag}-{i}" for i in range(PROCESSES)
        }
        assert {i: s["admin_port"] for i, s in starting.items()} == {
            i: base + i for i in range(PROCESSES)
        }

        # The rebalance done before the traffic (each process holds partitions of its own,
        # together all four), so both must route some.
        deadline = time.monotonic() + 60
        while not settled(owned(w), 4):
            assert time.monotonic() < deadline, f"not settled: {owned(w)}\n{w.tail()}"
            time.sleep(0.2)

        good, bad = produce(kafka_bootstrap, topics.inbound, 2000, bad_every=100)
        got = read_committed(kafka_bootstrap, topics, len(good) + len(bad))
        ids = Counter(v["message_id"] for _, v, _ in got.results)
        assert not [i for i, n in ids.items() if n > 1], "a message routed twice"
        assert set(ids) == good
        assert Counter(k for k, _ in got.dead) == Counter(bad)
        committed = [p.committed() for p in procs]
        assert sum(committed) == len(good) + len(bad), committed
        assert all(committed), f"a process routed nothing: {committed}"
    finally:
        w.signal(signal.SIGTERM)
        code = w.wait(60)
    assert code == 0, w.tail()
    events = w.log_lines()
    stopped = sorted(e["process"] for e in events if e.get("event") == "stopped")
    assert stopped == list(range(PROCESSES)), "each process drained and stopped"
    assert not [e for e in events if e.get("event") in {"shutdown_grace_expired", "process_exited"}]
    (supervisor,) = [e for e in events if e.get("event") == "supervisor_stopped"]
    assert (supervisor["exit_code"], supervisor["exit_codes"]) == (0, [0] * PROCESSES)
