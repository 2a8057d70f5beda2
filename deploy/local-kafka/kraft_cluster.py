"""The layout of a local multi-node KRaft cluster: its ports, each node's properties, its file.

Pure functions and a small JSON state file, so the `kafka` tool's process handling stays
there and this part is unit-tested without a JVM (tests/unit/deploy/test_kraft_cluster.py).
Stdlib only, like the tool.

Every node is a broker and a controller (combined mode) and a voter of the static quorum
``controller.quorum.voters``, so a three-node cluster keeps its metadata quorum and every
partition with any one node down. Each node listens on 127.0.0.1 with:
- PLAINTEXT: clients and replication (the inter-broker listener), advertised as itself;
- CONTROLLER: the quorum;
- EXTERNAL (only when an address is given for it): clients that must reach the broker
  through something in between, such as a fault-injecting proxy. Kafka hands clients the
  advertised addresses of the listener they connected on, so a client that bootstraps at
  EXTERNAL addresses keeps going through them, while replication stays on PLAINTEXT and
  never passes the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int  # PLAINTEXT: clients and replication
    controller_port: int
    external_port: int | None = None  # EXTERNAL listener, only with an advertised address
    advertised: str | None = None  # where EXTERNAL is advertised, e.g. a proxy in front

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def name(self) -> str:
        return f"node-{self.node_id}"


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for internal and default topics.

    Three copies where there are three nodes, and acks=all then needs two of them: one
    node may be down (a kill, a freeze, a rolling restart) without refusing a write.
    """
    factor = min(3, brokers)
    return factor, max(1, factor - 1)


def plan(
    brokers: int,
    advertise: list[str],
    free_port: Callable[[set[int]], int],
) -> list[Node]:
    """Nodes 1..brokers on distinct free ports; ``advertise`` is empty or one address each."""
    if brokers < 2:
        raise ValueError("a cluster has at least 2 nodes (1 is the single broker)")
    if advertise and len(advertise) != brokers:
        raise ValueError(f"{len(advertise)} advertised addresses for {brokers} nodes")
    for addr in advertise:
        host, sep, digits = addr.rpartition(":")
        if not sep or not host or not digits.isdigit() or not 0 < int(digits) < 65536:
            raise ValueError(f"not HOST:PORT: {addr!r}")
    taken: set[int] = {int(a.rpartition(":")[2]) for a in advertise}

    def take() -> int:
        port = free_port(taken)
        if port in taken:
            raise ValueError(f"free_port returned taken port {port}")
        taken.add(port)
        return port

    nodes = []
    for i in range(brokers):
        port, controller = take(), take()
        external = take() if advertise else None
        nodes.append(Node(i + 1, port, controller, external, advertise[i] if advertise else None))
    return nodes


def node_properties(node: Node, nodes: list[Node], data_dir: Path) -> list[str]:
    """server.properties of one node, as key=value lines."""
    factor, min_isr = replication(len(nodes))
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    listeners = [f"PLAINTEXT://{HOST}:{node.port}", f"CONTROLLER://{HOST}:{node.controller_port}"]
    advertised = [f"PLAINTEXT://{HOST}:{node.port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if node.external_port is not None and node.advertised:
        listeners.append(f"EXTERNAL://{HOST}:{node.external_port}")
        advertised.append(f"EXTERNAL://{node.advertised}")
        protocols.append("EXTERNAL:PLAINTEXT")
    return [
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        "controller.listener.names=CONTROLLER",
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(advertised)}",
        "inter.broker.listener.name=PLAINTEXT",
        f"listener.security.protocol.map={','.join(protocols)}",
        f"log.dirs={data_dir}",
        f"offsets.topic.replication.factor={factor}",
        f"transaction.state.log.replication.factor={factor}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={factor}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        f"default.replication.factor={factor}",
        f"min.insync.replicas={min_isr}",
        # One partition per node spreads the group and transaction coordinators over the
        # nodes (the single broker has 1): a fault then hits some coordinators, not all.
        f"offsets.topic.num.partitions={len(nodes)}",
        f"transaction.state.log.num.partitions={len(nodes)}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "num.partitions=1",
    ]


def bootstrap(nodes: list[Node]) -> str:
    return ",".join(n.addr for n in nodes)


def external_bootstrap(nodes: list[Node]) -> str | None:
    """The advertised EXTERNAL addresses, or None when the cluster has no such listener."""
    addrs = [n.advertised for n in nodes if n.advertised]
    return ",".join(addrs) if addrs else None


def save(path: Path, cluster_id: str, nodes: list[Node]) -> None:
    doc = {
        "cluster_id": cluster_id,
        "bootstrap": bootstrap(nodes),
        "external_bootstrap": external_bootstrap(nodes),
        "nodes": [asdict(n) for n in nodes],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def load(path: Path) -> tuple[str, list[Node]]:
    doc = json.loads(path.read_text())
    return str(doc["cluster_id"]), [Node(**n) for n in doc["nodes"]]
