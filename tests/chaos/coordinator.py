"""Which broker is a transactional.id's transaction coordinator, or a group's coordinator.

Kafka places the id's state in partition ``Utils.abs(transactionalId.hashCode) %
transaction.state.log.num.partitions`` of ``__transaction_state``
(TransactionStateManager.partitionFor, unchanged from 0.11 to 4.x); that partition's
leader is the coordinator. A consumer group's coordinator is placed the same way over
``__consumer_offsets``. confluent-kafka's AdminClient has no DescribeTransactions nor
FindCoordinator, so the chaos suite computes it, and checks the computation against what
librdkafka itself found for a few probe ids (``observed_coordinator``): a probe with the
worker's own id would fence the worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

TXN_STATE = "__transaction_state"
OFFSETS = "__consumer_offsets"


def java_string_hash(text: str) -> int:
    """java.lang.String.hashCode(): over UTF-16 code units, in 32-bit two's complement."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """The internal-topic partition that holds ``key``'s coordinator state."""
    h = java_string_hash(key)
    # org.apache.kafka.common.utils.Utils.abs: Integer.MIN_VALUE maps to 0, not to itself.
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def coordinator(admin: AdminClient, internal_topic: str, key: str) -> tuple[int, int]:
    """(node id of the coordinator, partition of ``internal_topic``) for the key, now."""
    md = admin.list_topics(internal_topic, timeout=15)
    partitions = md.topics[internal_topic].partitions
    if not partitions:
        raise RuntimeError(f"{internal_topic} has no partitions yet")
    p = coordinator_partition(key, len(partitions))
    return int(partitions[p].leader), p


def txn_coordinator(admin: AdminClient, transactional_id: str) -> tuple[int, int]:
    """(node id of the coordinator, __transaction_state partition) for the id, now."""
    return coordinator(admin, TXN_STATE, transactional_id)


def group_coordinator(admin: AdminClient, group: str) -> tuple[int, int]:
    """(node id of the coordinator, __consumer_offsets partition) for the group, now."""
    return coordinator(admin, OFFSETS, group)


def observed_coordinator(
    bootstrap: str, transactional_id: str, node_by_addr: dict[str, int], timeout_s: float = 30
) -> int | None:
    """The node librdkafka found as the id's coordinator (its statistics' TxnCoordinator)."""
    stats: list[dict[str, Any]] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "statistics.interval.ms": 200,
            "stats_cb": lambda s: stats.append(json.loads(s)),
        }
    )
    try:
        producer.init_transactions(timeout_s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            producer.poll(0.2)
            for s in reversed(stats):
                coord = s.get("brokers", {}).get("TxnCoordinator") or {}
                if coord.get("state") == "UP" and coord.get("nodename") in node_by_addr:
                    return node_by_addr[coord["nodename"]]
        return None
    finally:
        producer.flush(5)
