"""Metrics that must follow the assignment (issue 9, defect 10), readiness and the breaker."""

from __future__ import annotations

import orjson
from confluent_kafka import TopicPartition
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.metrics import Metrics


def test_lag_series_of_revoked_partitions_are_removed() -> None:
    m = Metrics()
    parts = {str(p): {"app_offset": 5, "ls_offset": 9} for p in range(3)}
    m.on_stats(orjson.dumps({"topics": {"in": {"partitions": parts}}}).decode())
    assert generate_latest(m.registry).count(b"support_consumer_lag{") == 3
    m.forget_partitions([TopicPartition("in", 1), TopicPartition("in", 7)])  # 7: never seen
    body = generate_latest(m.registry)
    assert body.count(b"support_consumer_lag{") == 2 and b'partition="1"' not in body


def _samples(m: Metrics) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in family.samples
    }


def test_readiness_is_exported_once_tracked_and_read_at_each_scrape() -> None:
    m = Metrics()
    assert "support_ready" not in _samples(m)  # no source yet: no claim either way
    ready = False
    m.track_readiness(lambda: ready)
    assert _samples(m)["support_ready"] == 0.0
    ready = True
    assert _samples(m)["support_ready"] == 1.0  # no set(): the scrape asked
    m.track_readiness(lambda: False)  # a second source replaces the first, registered once
    assert _samples(m)["support_ready"] == 0.0


def test_failing_batches_gauge_is_exported_at_zero() -> None:
    m = Metrics()
    assert _samples(m)["support_model_failing_batches"] == 0.0
    m.model_failing_batches.set(2)
    assert _samples(m)["support_model_failing_batches"] == 2.0
