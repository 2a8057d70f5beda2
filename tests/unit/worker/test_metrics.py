"""Metrics that must follow the assignment (issue 9, defect 10), readiness and the breaker."""

from __future__ import annotations

import orjson
from confluent_kafka import TopicPartition
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker import codec
from worker.inference import SKIPPED
from worker.intake import Item
from worker.metrics import Metrics
from worker.outgoing import Outgoing


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


def test_latencies_are_observed_in_seconds() -> None:
    """Base units (issue 24): the pipeline's milliseconds arrive as seconds, named so."""
    m = Metrics()
    items, outgoing = [], []
    for offset, ts in enumerate((1_000, 1_250)):  # Kafka timestamps, ms
        rec = codec.Record("in", 0, offset, None, b"{}", [], ts)
        items.append(Item(rec, codec.Accepted(rec, {}, f"m{offset}", None, "t"), [1, 2]))
        outgoing.append(Outgoing("out", None, b"{}", [], route="escalate", reason="model"))
    m.observe_batch(items, outgoing, [SKIPPED, SKIPPED], 40.0, 1_500.0, 2_000.0)
    samples = _samples(m)
    assert samples["support_inference_seconds_sum"] == 0.04
    assert samples["support_inference_seconds_count"] == 1
    assert samples["support_queue_seconds_sum"] == 0.5 + 0.25
    assert samples["support_end_to_end_seconds_sum"] == 1.0 + 0.75
    body = generate_latest(m.registry).decode()
    assert 'support_end_to_end_seconds_bucket{le="0.5"} 0.0' in body
    assert 'support_end_to_end_seconds_bucket{le="1.0"} 2.0' in body
    assert 'support_inference_seconds_bucket{le="0.05"} 1.0' in body
    # The old names are gone (docs/operations.md says so to an operator upgrading).
    families = {f.name for f in text_string_to_metric_families(body)}
    assert {"support_queue_seconds", "support_end_to_end_seconds"} <= families
    assert not [name for name in families if name.endswith("_ms")]
