"""D, E and F on a real broker: worker processes (tools/worker_proc.py) and a bare loop."""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from schemas.messages import ROUTES
from tools import worker_proc
from tools.bench.model import rate
from tools.worker_proc import WorkerProc
from worker.kafka.clients import TXN_RETRY_BACKOFF_MS

OUTPUTS = (*ROUTES, "dlq")
ROLES = ("inbound", *OUTPUTS)


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def _topics(bootstrap: str, partitions: int) -> dict[str, str]:
    from confluent_kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:8]
    names = {r: f"bench.{r}.{tag}" for r in ROLES}
    admin = _admin(bootstrap)  # held: a collected client fails its pending futures
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=partitions if r == "inbound" else 1, replication_factor=1)
            for r, n in names.items()
        ]
    )
    for f in futures.values():
        f.result(30)
    return names


def _drop(bootstrap: str, names: dict[str, str]) -> None:
    admin = _admin(bootstrap)
    for f in admin.delete_topics(list(names.values())).values():
        f.result(30)


def _preload(bootstrap: str, topic: str, texts: Sequence[str]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, t in enumerate(texts):
        p.produce(
            topic,
            key=f"c{i % 101}".encode(),
            value=orjson.dumps({"message_id": f"m{i}", "text": t}),
        )
        if i % 1000 == 0:
            p.poll(0)
    p.flush(60)


def _start(bootstrap: str, topics: dict[str, str], model: Path, env: dict[str, str]) -> WorkerProc:
    """A worker of its own group and transactional.id; ``env`` holds SUPPORT_WORKER_* names."""
    tag = uuid.uuid4().hex[:8]
    log = Path(tempfile.mkstemp(prefix="bench-worker-", suffix=".log")[1])
    return worker_proc.start(
        bootstrap, topics, model, log, group=f"bench-{tag}", txn_id=f"bench-{tag}", extra_env=env
    )


def worker_figures(n: int, first: float, seconds: float, sums: Sequence[float]) -> dict[str, float]:
    """D's figures from a run of n messages.

    ``first``: how many were committed with the first batch, when the clock started;
    ``seconds``: from then until all n were. ``sums``: the worker's batch size sum and
    count, then its forward-pass seconds sum and count (``BATCH_METRICS``); the mean
    forward pass is reported in milliseconds, as C's times are.
    """
    size_sum, size_n, s_sum, s_n = sums
    return {
        "msgs_per_s": rate(n - int(first), seconds),
        "mean_batch": size_sum / max(size_n, 1),
        "mean_inference_ms": s_sum / max(s_n, 1) * 1000,
    }


def served_variant(metrics_text: str) -> str | None:
    """The variant a worker serves, from its support_model_variant metric."""
    for line in metrics_text.splitlines():
        if line.startswith("support_model_variant{") and line.rstrip().endswith(" 1.0"):
            labels = line[line.index("{") + 1 : line.index("}")]
            for pair in labels.split(","):
                key, _, value = pair.partition("=")
                if key == "variant":
                    return value.strip('"')
    return None


@contextlib.contextmanager
def preloaded_worker(
    bootstrap: str, model: Path, texts: Sequence[str], env: dict[str, str]
) -> Iterator[WorkerProc]:
    """A ready worker of its own group on topics of its own, ``texts`` waiting for it;
    stopped and the topics dropped on the way out."""
    topics = _topics(bootstrap, partitions=4)
    try:
        _preload(bootstrap, topics["inbound"], texts)
        w = _start(bootstrap, topics, model, env)
        try:
            w.wait_ready(timeout=180)
            yield w
        finally:
            w.stop()
    finally:
        _drop(bootstrap, topics)


BATCH_METRICS = (
    "support_batch_size_sum",
    "support_batch_size_count",
    "support_inference_seconds_sum",
    "support_inference_seconds_count",
)


def bench_worker(
    bootstrap: str, model: Path, texts: Sequence[str], env: dict[str, str]
) -> dict[str, Any]:
    """D (and F with the null model): preload, start, time from ready to all committed.

    Also the worker's own mean batch size and forward-pass time, from its metrics: set
    beside C's, they show how much the model slows down when it shares the machine.
    """
    with preloaded_worker(bootstrap, model, texts, env) as w:
        first, seconds = w.wait_committed(len(texts))
        figures: dict[str, Any] = worker_figures(
            len(texts), first, seconds, w.metrics(*BATCH_METRICS)
        )
        figures["variant"] = served_variant(w.get("/metrics")[1])
        return figures


def bench_bare(
    bootstrap: str,
    texts: Sequence[str],
    batch: int,
    retry_backoff_ms: int = TXN_RETRY_BACKOFF_MS,
) -> float:
    """A bare consume -> produce loop with the worker's transaction per batch, back to back
    (``retry_backoff_ms``: the producer's, the worker's by default)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topics = _topics(bootstrap, partitions=4)
    try:
        _preload(bootstrap, topics["inbound"], texts)
        tag = uuid.uuid4().hex[:8]
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bare-{tag}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": f"bare-{tag}",
                "linger.ms": 5,
                "retry.backoff.ms": retry_backoff_ms,
            }
        )
        p.init_transactions(30)
        c.subscribe([topics["inbound"]])
        while not c.assignment():
            c.poll(0.1)
        # The clock starts at the first commit, as D's: the group join and the first fetch
        # are not the loop's speed.
        done, first, started = 0, 0, 0.0
        while done < len(texts):
            msgs = [m for m in c.consume(batch, timeout=0.05) if m.error() is None]
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce(topics["more_info"], key=m.key(), value=m.value())
            offsets: dict[int, int] = {}
            for m in msgs:
                offsets[m.partition() or 0] = max(
                    offsets.get(m.partition() or 0, -1), m.offset() or 0
                )
            tps = [TopicPartition(topics["inbound"], k, v + 1) for k, v in offsets.items()]
            p.send_offsets_to_transaction(tps, c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            if not done:
                first, started = len(msgs), time.monotonic()
            done += len(msgs)
        elapsed = time.monotonic() - started
        c.close()
        return rate(len(texts) - first, elapsed)
    finally:
        _drop(bootstrap, topics)


def txn_backoff(bootstrap: str, texts: Sequence[str], batch: int) -> str:
    """Milliseconds per back-to-back transaction of the bare loop at librdkafka's default
    retry.backoff.ms (100), Java's for CONCURRENT_TRANSACTIONS (20) and the worker's, as a
    markdown table (worker.kafka.clients.TXN_RETRY_BACKOFF_MS)."""
    lines = [
        f"bare loop, {len(texts)} messages in transactions of {batch}, back to back",
        "",
        "| retry.backoff.ms | msg/s | ms per transaction |",
        "|---|---|---|",
    ]
    for backoff in sorted({100, 20, TXN_RETRY_BACKOFF_MS}, reverse=True):
        speed = bench_bare(bootstrap, texts, batch, backoff)
        lines.append(f"| {backoff} | {speed:,.0f} | {1000 * batch / speed:.1f} |")
    return "\n".join(lines)


def latency_figures(rate_: float, latencies_ms: Sequence[float]) -> dict[str, float]:
    """E's figures: the paced rate and the percentiles of input -> committed output."""
    q = np.percentile(latencies_ms, [50, 95, 99])
    return {
        "rate": rate_,
        "messages": len(latencies_ms),
        "p50_ms": float(q[0]),
        "p95_ms": float(q[1]),
        "p99_ms": float(q[2]),
    }


def bench_latency(
    bootstrap: str,
    model: Path,
    texts: Sequence[str],
    rate_: float,
    seconds: float,
    env: dict[str, str],
) -> dict[str, float]:
    """E: a paced producer; Kafka timestamp of each input -> its committed output."""
    from confluent_kafka import Consumer, Producer

    topics = _topics(bootstrap, partitions=4)
    try:
        w = _start(bootstrap, topics, model, env)
        try:
            w.wait_ready(timeout=120)
            time.sleep(2)
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
            p.list_topics(topics["inbound"], timeout=10)
            n = max(1, int(rate_ * seconds))
            started = time.monotonic()
            for i in range(n):
                target = started + i / rate_
                while (now := time.monotonic()) < target:
                    time.sleep(min(0.001, target - now))
                value = orjson.dumps({"message_id": f"m{i}", "text": texts[i % len(texts)]})
                p.produce(topics["inbound"], key=f"c{i % 101}".encode(), value=value)
                p.poll(0)
            p.flush(30)
            w.wait_committed(n, timeout=120)
        finally:
            w.stop()
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"lat-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        c.subscribe([topics[r] for r in OUTPUTS])
        lat: list[float] = []
        deadline = time.monotonic() + 30
        while len(lat) < n and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error() is None and m.value():
                    v = orjson.loads(m.value() or b"{}")
                    lat.append(m.timestamp()[1] - v["timing"]["kafka_timestamp_ms"])
        c.close()
        return latency_figures(rate_, lat)
    finally:
        _drop(bootstrap, topics)
