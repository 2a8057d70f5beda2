"""Prometheus metrics of one worker, in their own registry (tests build several)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.labels import HEADS
from worker.inference import ItemResult
from worker.intake import Item
from worker.model.protocol import Prediction
from worker.outgoing import Outgoing

# Durations are exported in seconds (`*_seconds`), Prometheus's base unit, which its
# dashboards and recording rules assume; the pipeline measures milliseconds and
# observe_batch divides. The bounds are the old `_ms` histograms' ones, 1 ms to 30 s.
LATENCY_BUCKETS_S = tuple(
    ms / 1000 for ms in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages_in = Counter("support_messages_in", "records consumed", registry=r)
        self.messages_out = Counter(
            "support_messages_out", "results committed, by route", ["route"], registry=r
        )
        self.dead_letters = Counter(
            "support_dead_letters", "dead letters committed, by stage", ["stage"], registry=r
        )
        self.low_confidence = Counter(
            "support_low_confidence_fallbacks",
            "results the fallback took for low action confidence",
            registry=r,
        )
        self.unfamiliar = Counter(
            "support_unfamiliar_fallbacks",
            "results the fallback took because the OOD score was above its threshold",
            registry=r,
        )
        self.predictions = Counter(
            "support_predictions", "predicted labels", ["head", "label"], registry=r
        )
        self.batches = Counter("support_batches", "batches committed", registry=r)
        self.model_calls = Counter("support_model_calls", "forward passes", registry=r)
        self.aborts = Counter("support_transaction_aborts", "aborted transactions", registry=r)
        self.batch_size = Histogram(
            "support_batch_size", "messages per batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "support_batch_tokens", "tokens per batch", buckets=TOKEN_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "support_queue_seconds",
            "Kafka timestamp to batch start, in seconds",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "support_inference_seconds",
            "forward pass per batch, in seconds",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "support_end_to_end_seconds",
            "Kafka timestamp to commit, in seconds",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "support_consumer_lag",
            "messages behind, per partition",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_errors = Counter(
            "support_consumer_errors",
            "errors the Kafka consumer delivered instead of a record, by librdkafka code",
            ["code"],
            registry=r,
        )
        self.unreadable_spans = Counter(
            "support_unreadable_spans",
            "spans of offsets the Kafka client could not deliver (a batch it cannot "
            "decompress, ...), each dead-lettered as one pointer and committed past",
            ["topic", "partition", "code"],
            registry=r,
        )
        self.unreadable_offsets = Counter(
            "support_unreadable_offsets",
            "offsets inside those spans",
            ["topic", "partition", "code"],
            registry=r,
        )
        self.partition_stalled = Gauge(
            "support_partition_stalled",
            "1 while records wait on the partition and the offset this worker commits for it "
            "has not moved for stall_after_s",
            ["topic", "partition"],
            registry=r,
        )
        self.model_failing_batches = Gauge(
            "support_model_failing_batches",
            "batches in a row that failed whole in the model, a probe message too (0 once one "
            "passes); the circuit breaker opens at model.failing_batches",
            registry=r,
        )
        self.model_variant = Gauge(
            "support_model_variant",
            "1 for the variant this worker serves (model.variant; auto: the fastest allowed "
            "one that autotune timed at startup, then 'live': the fastest on the worker's own "
            "full batches)",
            ["variant", "chosen_by"],
            registry=r,
        )
        self.model_variant_switches = Counter(
            "support_model_variant_switches",
            "auto switched the variant it serves after a trial on the worker's own batches",
            ["from_variant", "to_variant"],
            registry=r,
        )
        self.model_variant_trial_msgs_per_s = Gauge(
            "support_model_variant_trial_msgs_per_s",
            "the last live trial: messages per second of pipeline cycle on full batches, per "
            "contender",
            ["variant"],
            registry=r,
        )
        self.model_version = Gauge(
            "support_model_version",
            "1 for the model version this worker serves (it stamps every result)",
            ["name", "version"],
            registry=r,
        )
        self.model_swaps = Counter(
            "support_model_swaps",
            "model swaps between batches (a moved model.path pointer, or SIGHUP), by outcome: "
            "swapped, or failed (the old version keeps serving)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("swapped", "failed"):  # exported at 0 from the start: rate() needs it
            self.model_swaps.labels(outcome)
        self.review_queued = Counter(
            "support_review_queued",
            "results copied to the review queue, by why (unfamiliar, low_confidence, random)",
            ["reason"],
            registry=r,
        )
        self.review_skipped = Counter(
            "support_review_skipped",
            "review candidates not queued: near_copy (diversity) or budget (max_per_minute)",
            ["why"],
            registry=r,
        )
        # Exported at 0 from the start, so a panel or a rate() has a series before the
        # first pick.
        for reason in ("unfamiliar", "low_confidence", "random"):
            self.review_queued.labels(reason)
        for why in ("near_copy", "budget"):
            self.review_skipped.labels(why)
        self.shadow_compared = Counter(
            "support_shadow_compared",
            "shadow: messages both the candidate and the serving model classified, per head "
            "(and route)",
            ["head"],
            registry=r,
        )
        self.shadow_agreed = Counter(
            "support_shadow_agreed",
            "shadow: of those, the ones where the two models agree, per head (and route)",
            ["head"],
            registry=r,
        )
        for head in (*HEADS, "route"):
            self.shadow_compared.labels(head)
            self.shadow_agreed.labels(head)
        # Exported once a source of readiness is given (track_readiness): until then the
        # worker has no readiness to report, and a constant 0 would read as "not ready".
        self.ready = Gauge(
            "support_ready", "1 while /readyz would answer 200, read at each scrape", registry=None
        )
        self._ready_registered = False

    def track_readiness(self, ready: Callable[[], bool]) -> None:
        """Export ``support_ready`` as ``ready()`` (``Health.ready``) at every scrape.

        Read at scrape time, so a scrape sees what /readyz would answer then; alert rules
        count its changes (readiness flapping).
        """
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        if not self._ready_registered:
            self.registry.register(self.ready)
            self._ready_registered = True

    def observe_batch(
        self,
        items: Sequence[Item],
        outgoing: Sequence[Outgoing],
        results: Sequence[ItemResult],
        inference_ms: float | None,
        started_wall_ms: float,
        now_ms: float,
    ) -> None:
        """Count one committed batch; the three sequences are aligned by index (the
        records the commit kept), ``inference_ms`` is the whole batch's.

        Times come in milliseconds, as the pipeline measures and logs them; the
        histograms observe seconds."""
        self.batches.inc()
        self.batch_size.observe(len(items))
        self.batch_tokens.observe(sum(len(i.ids) for i in items))
        if inference_ms is not None:  # None: no forward pass classified anything
            self.inference_seconds.observe(inference_ms / 1000)
        for item, out, result in zip(items, outgoing, results, strict=True):
            ts = item.record.timestamp_ms
            if ts is not None:
                self.queue_seconds.observe(max(0.0, started_wall_ms - ts) / 1000)
                self.end_to_end_seconds.observe(max(0.0, now_ms - ts) / 1000)
            if out.stage is not None:
                self.dead_letters.labels(out.stage).inc()
                continue
            self.messages_out.labels(out.route).inc()
            if out.reason == "low_confidence":
                self.low_confidence.inc()
            elif out.reason == "unfamiliar":
                self.unfamiliar.inc()
            if isinstance(result, Prediction):
                for head, label in result.labels.items():
                    self.predictions.labels(head, label).inc()

    def assigned(self, partitions: Any, codes: Sequence[str]) -> None:
        """Export a partition's unreadable counters at 0 (increase() needs a first sample)."""
        for tp in partitions:
            labels = (tp.topic, str(tp.partition))
            self.partition_stalled.labels(*labels).set(0)
            for code in codes:
                self.unreadable_spans.labels(*labels, code)
                self.unreadable_offsets.labels(*labels, code)

    def forget_partitions(self, partitions: Any) -> None:
        """Drop the gauges of partitions this worker no longer owns (revoked, lost).

        Counters stay: a count that vanished with its partition would hide it from alerts.
        """
        for tp in partitions:
            for gauge in (self.consumer_lag, self.partition_stalled):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))

    def on_stats(self, stats_json: str) -> None:
        """librdkafka statistics callback: consumer lag per assigned partition.

        Offsets are committed through the producer's transaction, so librdkafka never
        sees a committed offset and its own consumer_lag stays -1. Lag here is the
        last stable offset (what read_committed may read) minus our consume position.
        """
        stats: dict[str, Any] = orjson.loads(stats_json)
        for topic, body in stats.get("topics", {}).items():
            for partition, p in body.get("partitions", {}).items():
                position = p.get("app_offset", -1)
                end = p.get("ls_offset", -1)
                end = end if end >= 0 else p.get("hi_offset", -1)
                if partition != "-1" and position >= 0 and end >= 0:
                    self.consumer_lag.labels(topic, partition).set(max(0, end - position))
