"""Metrics that must follow the assignment (issue 9, defect 10)."""

from __future__ import annotations

import orjson
from confluent_kafka import TopicPartition
from prometheus_client import generate_latest

from worker.metrics import Metrics


def test_lag_series_of_revoked_partitions_are_removed() -> None:
    m = Metrics()
    parts = {str(p): {"app_offset": 5, "ls_offset": 9} for p in range(3)}
    m.on_stats(orjson.dumps({"topics": {"in": {"partitions": parts}}}).decode())
    assert generate_latest(m.registry).count(b"support_consumer_lag{") == 3
    m.forget_partitions([TopicPartition("in", 1), TopicPartition("in", 7)])  # 7: never seen
    body = generate_latest(m.registry)
    assert body.count(b"support_consumer_lag{") == 2 and b'partition="1"' not in body
