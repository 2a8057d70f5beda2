"""The chaos run's own three-node cluster (`--brokers 3`): nodes to kill, stop, freeze, restart.

``deploy/local-kafka/kafka up --brokers 3`` in the run's state dir (.kafka-chaos), on free
ports, so neither the `make test` broker nor a `make demo` broker is touched. Every node
is a broker and a KRaft controller; topics get replication factor 3 and
min.insync.replicas 2, so any one node may be down while every write still needs two
copies.

The broker-fault scenarios written for one broker (broker-restart, broker-freeze) act on
every node at once here (``kill()``, ``freeze()`` with no node): the whole cluster killed
or frozen. The cluster scenarios name a node (tests/chaos/scenarios/cluster_faults.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.chaos.broker import DEFAULT_STATE, _alive, kafka_tool


@dataclass(frozen=True)
class NodeInfo:
    """One node as cluster.json describes it (deploy/local-kafka/kraft_cluster.py)."""

    node_id: int
    port: int
    external_port: int | None
    advertised: str | None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"


class ChaosCluster:
    def __init__(
        self, state: Path = DEFAULT_STATE, brokers: int = 3, advertise: list[str] | None = None
    ) -> None:
        self.state, self.brokers = state, brokers
        self.advertise = advertise or []  # each node's EXTERNAL address (its proxy), or none
        self.addr = ""
        self.nodes: list[NodeInfo] = []
        self.frozen: set[int] = set()
        self.label = f"all {brokers} brokers"
        self.scope_note = f" On the {brokers}-node cluster: every node at once."
        self._admin: AdminClient | None = None

    # -- the tool ---------------------------------------------------------------------

    def _tool(self, *args: str, timeout: float = 240) -> str:
        return kafka_tool(args, self.state, timeout)

    def up(self) -> str:
        args = ["up", "--brokers", str(self.brokers)]
        if self.advertise:
            args += ["--advertise-external", ",".join(self.advertise)]
        self.addr = self._tool(*args)
        doc = json.loads((self.state / "cluster.json").read_text())
        self.nodes = [
            NodeInfo(n["node_id"], n["port"], n.get("external_port"), n.get("advertised"))
            for n in doc["nodes"]
        ]
        self._admin = AdminClient({"bootstrap.servers": self.addr})
        return self.addr

    def down(self) -> None:
        for node_id in list(self.frozen):
            with contextlib.suppress(OSError, ValueError):
                self.thaw(node_id)
        self._admin = None  # its connection errors would outlive the nodes on stderr
        self._tool("down", timeout=120)

    @property
    def external(self) -> str | None:
        """The bootstrap through each node's EXTERNAL listener (its proxy), if any."""
        addrs = [n.advertised for n in self.nodes if n.advertised]
        return ",".join(addrs) if addrs else None

    @property
    def admin(self) -> AdminClient:
        assert self._admin is not None, "up() first"
        return self._admin

    # -- one node, or all -------------------------------------------------------------

    def ids(self, node: int | None) -> list[int]:
        return [n.node_id for n in self.nodes] if node is None else [node]

    def pid(self, node: int) -> int:
        return int((self.state / f"node-{node}" / "broker.pid").read_text().strip())

    def what(self, node: int | None = None) -> str:
        """The target of a fault, for the fault log: nodes and their pids."""
        return ", ".join(f"node {i} pid {self.pid(i)}" for i in self.ids(node))

    def kill(self, node: int | None = None) -> None:
        """SIGKILL: no clean shutdown; the node's log recovers on its next start."""
        self._signal_and_wait(node, signal.SIGKILL, 15)

    def stop(self, node: int, timeout: float = 90) -> float:
        """SIGTERM (a controlled shutdown: leadership moves first); seconds until it exited."""
        started = time.monotonic()
        if not self._signal_and_wait(node, signal.SIGTERM, timeout):
            raise RuntimeError(f"node {node} outlived SIGTERM for {timeout:.0f}s")
        return time.monotonic() - started

    def _signal_and_wait(self, node: int | None, sig: signal.Signals, timeout: float) -> bool:
        pids = [self.pid(i) for i in self.ids(node)]
        for pid in pids:
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)  # not our children (the tool started them): init reaps them
        return not any(_alive(p) for p in pids)

    def relaunch(self, node: int | None = None) -> str:
        """The node (None: every stopped node) again, on its data dir and ports."""
        args = ["relaunch"] if node is None else ["relaunch", "--node", str(node)]
        self._tool(*args)
        return self.addr

    def freeze(self, node: int | None = None) -> None:
        for i in self.ids(node):
            os.killpg(self.pid(i), signal.SIGSTOP)
            self.frozen.add(i)

    def thaw(self, node: int | None = None) -> None:
        for i in self.ids(node):
            os.killpg(self.pid(i), signal.SIGCONT)
            self.frozen.discard(i)

    # -- what the cluster says --------------------------------------------------------

    def leader(self, topic: str, partition: int, via: int | None = None) -> int:
        """The partition's leader; ``via``: ask that node and no other.

        While a node is frozen its connections look up, and a long-lived client may send
        its metadata request there and wait out the timeout; a fresh client bootstrapped
        at one live node has no other broker to ask.
        """
        if via is None:
            md = self.admin.list_topics(topic, timeout=15)
        else:
            addr = next(n.addr for n in self.nodes if n.node_id == via)
            md = AdminClient({"bootstrap.servers": addr}).list_topics(topic, timeout=3)
        return int(md.topics[topic].partitions[partition].leader)

    def leaders(self, topics: list[str]) -> dict[tuple[str, int], int]:
        out = {}
        for topic in topics:
            md = self.admin.list_topics(topic, timeout=15)
            for p, meta in md.topics[topic].partitions.items():
                out[(topic, p)] = int(meta.leader)
        return out

    def under_replicated(self) -> list[str]:
        """Partitions (internal topics too) without a leader or with a replica out of the ISR,
        plus every node the metadata does not list as a live broker."""
        md = self.admin.list_topics(timeout=15)
        problems = [
            f"node {n.node_id} not listed" for n in self.nodes if n.node_id not in md.brokers
        ]
        for name, topic in md.topics.items():
            for p, meta in topic.partitions.items():
                if meta.leader < 0 or set(meta.isrs) != set(meta.replicas):
                    problems.append(f"{name}[{p}] leader {meta.leader} isr {sorted(meta.isrs)}")
        return problems

    def wait_healthy(
        self, timeout: float = 180, tick: Callable[[], None] | None = None
    ) -> tuple[bool, float, list[str]]:
        """Until every node is listed and every partition has its full ISR: (ok, s, problems).

        ``tick`` runs between the checks (a scenario restarting the workers that exit).
        """
        started = time.monotonic()
        problems = ["not asked yet"]
        while time.monotonic() - started < timeout:
            try:
                problems = self.under_replicated()
            except Exception as exc:
                problems = [f"metadata: {exc}"]
            if not problems:
                break
            if tick is not None:
                tick()
            time.sleep(1.0)
        return not problems, round(time.monotonic() - started, 1), problems[:5]
