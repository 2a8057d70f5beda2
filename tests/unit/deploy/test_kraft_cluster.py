"""deploy/local-kafka/kraft_cluster.py: the ports and properties of a local KRaft cluster."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import KAFKA_TOOL


def _load() -> ModuleType:
    path = KAFKA_TOOL.parent / "kraft_cluster.py"
    spec = importlib.util.spec_from_file_location("kraft_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kraft_cluster", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


kc = _load()


def _ports(start: int = 40000) -> object:
    """A free_port stand-in: counts up, skipping what is taken."""
    counter = itertools.count(start)

    def free_port(taken: set[int]) -> int:
        return next(p for p in counter if p not in taken)

    return free_port


def _props(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines)


def test_three_nodes_get_distinct_ports_and_one_quorum(tmp_path: Path) -> None:
    nodes = kc.plan(3, [], _ports())
    ports = [p for n in nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6
    assert [n.node_id for n in nodes] == [1, 2, 3]
    assert kc.bootstrap(nodes) == ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    assert kc.external_bootstrap(nodes) is None
    voters = {
        _props(kc.node_properties(n, nodes, tmp_path))["controller.quorum.voters"] for n in nodes
    }
    [quorum] = voters  # every node names the same three voters
    assert quorum == ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)


def test_three_nodes_keep_three_copies_and_need_two(tmp_path: Path) -> None:
    nodes = kc.plan(3, [], _ports())
    p = _props(kc.node_properties(nodes[1], nodes, tmp_path / "data"))
    assert p["process.roles"] == "broker,controller"
    assert p["node.id"] == "2"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "default.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert p[key] == "3", key
    for key in (
        "transaction.state.log.min.isr",
        "min.insync.replicas",
        "share.coordinator.state.topic.min.isr",
    ):
        assert p[key] == "2", key
    assert p["transaction.state.log.num.partitions"] == "3"
    assert p["inter.broker.listener.name"] == "PLAINTEXT"
    assert p["log.dirs"] == str(tmp_path / "data")
    assert "EXTERNAL" not in p["listeners"]


def test_replication_follows_the_node_count() -> None:
    assert kc.replication(2) == (2, 1)
    assert kc.replication(3) == (3, 2)
    assert kc.replication(5) == (3, 2)


def test_external_listeners_are_advertised_where_asked(tmp_path: Path) -> None:
    proxies = ["127.0.0.1:41001", "127.0.0.1:41002", "127.0.0.1:41003"]
    nodes = kc.plan(3, proxies, _ports(41000))
    taken = {int(a.rsplit(":", 1)[1]) for a in proxies}
    own = [p for n in nodes for p in (n.port, n.controller_port, n.external_port)]
    assert len(set(own)) == 9 and not set(own) & taken  # never a proxy's port
    assert kc.external_bootstrap(nodes) == ",".join(proxies)
    for node, proxy in zip(nodes, proxies, strict=True):
        p = _props(kc.node_properties(node, nodes, tmp_path))
        assert p["listeners"].split(",") == [
            f"PLAINTEXT://127.0.0.1:{node.port}",
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            f"EXTERNAL://127.0.0.1:{node.external_port}",
        ]
        # Clients of EXTERNAL are sent to the proxy; replication stays on PLAINTEXT.
        assert p["advertised.listeners"] == (
            f"PLAINTEXT://127.0.0.1:{node.port},EXTERNAL://{proxy}"
        )
        assert "EXTERNAL:PLAINTEXT" in p["listener.security.protocol.map"]


@pytest.mark.parametrize(
    ("brokers", "advertise", "error"),
    [
        (1, [], "at least 2 nodes"),
        (3, ["127.0.0.1:1", "127.0.0.1:2"], "2 advertised addresses for 3 nodes"),
        (2, ["127.0.0.1:1", "no-port"], "not HOST:PORT"),
        (2, ["127.0.0.1:1", "127.0.0.1:99999"], "not HOST:PORT"),
    ],
)
def test_bad_plans_are_refused(brokers: int, advertise: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        kc.plan(brokers, advertise, _ports())


def test_the_state_file_round_trips(tmp_path: Path) -> None:
    nodes = kc.plan(3, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], _ports())
    path = tmp_path / "cluster.json"
    kc.save(path, "abc", nodes)
    assert kc.load(path) == ("abc", nodes)
