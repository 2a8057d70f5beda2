"""`support-worker bench`: the notebook's approach, the model's ceiling and the worker,
side by side in one run, on one artifact and one message set.

A  notebook predict(): tokenize and run one message at a time
B  notebook batch_predict_optimized(): one tokenizer call + forward, a Python loop after
C  model-only ceiling: batches tokenized in advance, forward pass only, worker batch size
D  the worker end to end on the real broker: preload N, time until all N are committed
E  latency under load: a producer paced at 50% of D, input -> committed output times
F  the worker with a null model vs a bare consume -> produce loop, same transactions
memory  the worker's pipeline (batch, tokenize, infer, route, serialize) without Kafka
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from confluent_kafka import Message

from schemas.labels import HEADS
from trainer.artifact import LoadedModel, load_artifact
from worker.admin import Health
from worker.inference import Classifier
from worker.metrics import Metrics
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.service import pin_tokenizer_threads
from worker.settings import BatchingSettings, WorkerSettings

REPO = Path(__file__).resolve().parent.parent


def message_set(n: int, seed: int = 7) -> tuple[list[Any], str]:
    """n labelled examples: CLINC test texts after augmentation (labels.md), else synthetic."""
    from trainer.data import clinc
    from trainer.data.splits import DataSpec, build

    path = clinc.default_path() or REPO.parent / "shared/data/clinc150/data_oos_plus.json"
    spec = (
        DataSpec(clinc_path=path, seed=seed) if path.exists() else DataSpec(sources=("synthetic",))
    )
    examples = build(spec)["test_noisy"]
    source = "clinc test, augmented" if path.exists() else "synthetic"
    return [examples[i % len(examples)] for i in range(n)], source


def head_accuracy(classifier: Classifier, examples: Sequence[Any], batch: int) -> dict[str, float]:
    """Accuracy per head of this classifier on labelled examples (the same message set)."""
    ids, _ = classifier.token_ids([ex.text for ex in examples])
    hits = dict.fromkeys(HEADS, 0)
    for i in range(0, len(ids), batch):
        out = classifier.predict(ids[i : i + batch])
        for h, labels in HEADS.items():
            for j, k in enumerate(out.top[h].tolist()):
                hits[h] += labels[k] == examples[i + j].label(h)
    return {h: n / len(examples) for h, n in hits.items()}


def length_stats(classifier: Classifier, texts: Sequence[str]) -> dict[str, float]:
    lengths = np.array([len(x) for x in classifier.token_ids(texts)[0]])
    return {
        "mean": float(lengths.mean()),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
    }


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


@torch.inference_mode()
def bench_a(loaded: LoadedModel, texts: Sequence[str]) -> float:
    """The notebook's predict(): one tokenizer call and one forward per message."""
    model, tok = loaded.model, loaded.tokenizer
    started = time.perf_counter()
    for text in texts:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=128, padding=True)
        out = model(enc["input_ids"], enc["attention_mask"])
        _ = {h: int(torch.argmax(out[h], dim=-1).item()) for h in HEADS}
    return _rate(len(texts), time.perf_counter() - started)


@torch.inference_mode()
def bench_b(loaded: LoadedModel, texts: Sequence[str], batch: int) -> float:
    """batch_predict_optimized(): one call per batch, then a per-message loop over tensors."""
    model, tok = loaded.model, loaded.tokenizer
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = list(texts[i : i + batch])
        enc = tok(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = model(enc["input_ids"], enc["attention_mask"])
        _ = [{h: int(torch.argmax(out[h][j]).item()) for h in HEADS} for j in range(len(chunk))]
    return _rate(len(texts), time.perf_counter() - started)


@torch.inference_mode()
def bench_c(classifier: Classifier, texts: Sequence[str], batch: int) -> dict[str, float]:
    """Forward passes only, on batches tokenized and laid out (padded or packed) in advance."""
    ids, _ = classifier.token_ids(texts)
    chunks = [ids[i : i + batch] for i in range(0, len(ids), batch)]
    real = sum(len(x) for x in ids)
    padded = sum(len(chunk) * max(len(x) for x in chunk) for chunk in chunks)
    inputs = [classifier.prepare(chunk) for chunk in chunks]
    times = []
    for x in inputs:
        started = time.perf_counter()
        classifier.forward(x)
        if classifier.device.type == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously; time them, not the launch
        times.append(time.perf_counter() - started)
    full = [t for chunk, t in zip(chunks, times, strict=True) if len(chunk) == batch] or times
    return {
        "msgs_per_s": _rate(len(texts), sum(times)),
        "padding_fraction": 1 - real / padded,
        "full_batch_ms": statistics.median(full) * 1000,
    }


@torch.inference_mode()
def profile_ops(classifier: Classifier, texts: Sequence[str], batch: int, rows: int = 15) -> str:
    """torch.profiler's table of the forward pass's operators, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    ids, _ = classifier.token_ids(texts)
    inputs = [classifier.prepare(ids[i : i + batch]) for i in range(0, len(ids), batch)]
    for x in inputs[:3]:
        classifier.forward(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in inputs:
            classifier.forward(x)
    table: str = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return table


def bench_decode(texts: Sequence[str], repeats: int = 3) -> float:
    """Microseconds per message for decode: orjson + pydantic validation of the inbound."""
    from worker import codec

    records = [
        codec.Record(
            "in",
            0,
            i,
            b"k",
            orjson.dumps(
                {
                    "message_id": f"m{i}",
                    "text": t,
                    "conversation_id": f"c{i % 101}",
                    "channel": "chat",
                    "created_at": "2026-11-24T10:00:00Z",
                    "metadata": {"plan": "pro", "tries": 2},
                }
            ),
            [],
            None,
        )
        for i, t in enumerate(texts)
    ]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for r in records:
            codec.decode(r, 100_000)
        best = min(best, time.perf_counter() - started)
    return best / len(records) * 1e6


class MemoryMessage(Message):
    """A consumed record without a broker: a real Message, read by to_record as on a broker."""

    def __init__(self, offset: int, value: bytes) -> None:
        super().__init__(
            topic="memory",
            partition=0,
            offset=offset,
            key=b"k",
            value=value,
            timestamp=(1, int(time.time() * 1000)),
        )


class _MemoryProducer:
    def __init__(self) -> None:
        self.count = 0

    def produce(self, *_: Any, **__: Any) -> None:
        self.count += 1

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0


class _MemoryConsumer:
    def commit(self, **_: Any) -> None:
        pass

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition("memory", 0)]  # every MemoryMessage's partition: all owned


def bench_memory(classifier: Classifier, texts: Sequence[str], batching: BatchingSettings) -> float:
    """The worker's pipeline on in-memory records: no broker, same code from decode to bytes."""
    settings = WorkerSettings(mode="at_least_once", batching=batching)
    producer = _MemoryProducer()
    pipeline = Pipeline(
        settings,
        classifier,
        RoutingPolicy(),
        _MemoryConsumer(),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        Metrics(),
        Health(stale_after_s=60),
    )
    msgs = [
        MemoryMessage(i, orjson.dumps({"message_id": f"m{i}", "text": t}))
        for i, t in enumerate(texts)
    ]
    started = time.perf_counter()
    for i in range(0, len(msgs), batching.max_batch_size):
        pipeline.accept(msgs[i : i + batching.max_batch_size])
        if len(pipeline.batcher):
            pipeline.dispatch()  # as run() does when a batch is ready; overlap as configured
    pipeline.drain()
    elapsed = time.perf_counter() - started
    assert producer.count == len(msgs), (producer.count, len(msgs))
    return _rate(len(msgs), elapsed)


# -- on the real broker -------------------------------------------------------------


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def _topics(bootstrap: str, partitions: int) -> dict[str, str]:
    from confluent_kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:8]
    names = {
        r: f"bench.{r}.{tag}" for r in ("inbound", "escalate", "auto_resolve", "more_info", "dlq")
    }
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


class _Worker:
    def __init__(
        self, bootstrap: str, topics: dict[str, str], model: Path, env: dict[str, str]
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        full = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_WORKER_")}
        full.update({f"SUPPORT_WORKER_TOPICS__{r.upper()}": n for r, n in topics.items()})
        full.update(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            SUPPORT_WORKER_MODEL__PATH=str(model),
            SUPPORT_WORKER_GROUP_ID=f"bench-{tag}",
            SUPPORT_WORKER_TRANSACTIONAL_ID=f"bench-{tag}",
            SUPPORT_WORKER_ADMIN_PORT="0",
            SUPPORT_WORKER_LOG_LEVEL="info",  # the admin port is announced at info
            **env,
        )
        self.log = Path(tempfile.mkstemp(prefix="bench-worker-", suffix=".log")[1])
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run"],
                cwd=REPO,
                env=full,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        self.port = 0

    def metrics(self, *names: str) -> list[float]:
        """Sums of the named metrics over their labels, from one scrape."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            lines = r.read().decode().splitlines()
        return [
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in lines
                if line.startswith((name + " ", name + "{"))
            )
            for name in names
        ]

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bench worker exited; see {self.log}")
            for line in self.log.read_text(errors="replace").splitlines():
                if '"admin_listening"' in line:
                    self.port = json.loads(line)["port"]
            if self.port:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"bench worker not ready; see {self.log}")

    def committed(self) -> float:
        return sum(self.metrics("support_messages_out_total", "support_dead_letters_total"))

    def wait_done(self, n: int, timeout: float = 600) -> tuple[float, float]:
        """How many were committed when the first batch was, and seconds from then to all n."""
        deadline = time.monotonic() + timeout
        first: tuple[float, float] | None = None
        while time.monotonic() < deadline:
            done = self.committed()
            if first is None and done > 0:
                first = (time.monotonic(), done)
            if done >= n and first is not None:
                return first[1], time.monotonic() - first[0]
            # A scrape renders every metric: 10 a second is < 1% of the worker's CPU
            # (50 a second took 12%, which the measurement then reported as worker cost).
            time.sleep(0.1)
        raise RuntimeError(f"bench worker did not finish {n} messages; see {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def bench_worker(
    bootstrap: str, model: Path, texts: Sequence[str], env: dict[str, str]
) -> dict[str, float]:
    """D (and F with the null model): preload, start, time from ready to all committed.

    Also the worker's own mean batch size and forward-pass time, from its metrics: set
    beside C's, they show how much the model slows down when it shares the machine.
    """
    topics = _topics(bootstrap, partitions=4)
    try:
        _preload(bootstrap, topics["inbound"], texts)
        w = _Worker(bootstrap, topics, model, env)
        try:
            w.wait_ready()
            # The clock starts at the first committed batch: joining the group and the
            # first fetch are start-up, not throughput.
            first, seconds = w.wait_done(len(texts))
            size_sum, size_n, ms_sum, ms_n = w.metrics(
                "support_batch_size_sum",
                "support_batch_size_count",
                "support_inference_ms_sum",
                "support_inference_ms_count",
            )
            return {
                "msgs_per_s": _rate(len(texts) - int(first), seconds),
                "mean_batch": size_sum / max(size_n, 1),
                "mean_inference_ms": ms_sum / max(ms_n, 1),
            }
        finally:
            w.stop()
    finally:
        _drop(bootstrap, topics)


def bench_bare(bootstrap: str, texts: Sequence[str], batch: int) -> float:
    """A bare consume -> produce loop with the worker's transaction per batch."""
    from confluent_kafka import Consumer, Producer

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
            {"bootstrap.servers": bootstrap, "transactional.id": f"bare-{tag}", "linger.ms": 5}
        )
        p.init_transactions(30)
        c.subscribe([topics["inbound"]])
        while not c.assignment():
            c.poll(0.1)
        done, started = 0, time.monotonic()
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
            from confluent_kafka import TopicPartition

            tps = [TopicPartition(topics["inbound"], k, v + 1) for k, v in offsets.items()]
            p.send_offsets_to_transaction(tps, c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            done += len(msgs)
        elapsed = time.monotonic() - started
        c.close()
        return _rate(len(texts), elapsed)
    finally:
        _drop(bootstrap, topics)


def bench_latency(
    bootstrap: str,
    model: Path,
    texts: Sequence[str],
    rate: float,
    seconds: float,
    env: dict[str, str],
) -> dict[str, float]:
    """E: a paced producer; Kafka timestamp of each input -> its committed output."""
    from confluent_kafka import Consumer, Producer

    topics = _topics(bootstrap, partitions=4)
    try:
        w = _Worker(bootstrap, topics, model, env)
        try:
            w.wait_ready()
            time.sleep(2)
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
            p.list_topics(topics["inbound"], timeout=10)
            n = max(1, int(rate * seconds))
            started = time.monotonic()
            for i in range(n):
                target = started + i / rate
                while (now := time.monotonic()) < target:
                    time.sleep(min(0.001, target - now))
                value = orjson.dumps({"message_id": f"m{i}", "text": texts[i % len(texts)]})
                p.produce(topics["inbound"], key=f"c{i % 101}".encode(), value=value)
                p.poll(0)
            p.flush(30)
            w.wait_done(n, timeout=120)
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
        c.subscribe([topics[r] for r in ("escalate", "auto_resolve", "more_info", "dlq")])
        lat: list[float] = []
        deadline = time.monotonic() + 30
        while len(lat) < n and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error() is None and m.value():
                    v = orjson.loads(m.value() or b"{}")
                    lat.append(m.timestamp()[1] - v["timing"]["kafka_timestamp_ms"])
        c.close()
        q = np.percentile(lat, [50, 95, 99])
        return {
            "rate": rate,
            "messages": len(lat),
            "p50_ms": float(q[0]),
            "p95_ms": float(q[1]),
            "p99_ms": float(q[2]),
        }
    finally:
        _drop(bootstrap, topics)


# -- the run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way to run the same artifact: a Classifier's options and the worker's env."""

    name: str
    quantize: str = "none"
    autocast: str = "none"
    padding_free: bool = True

    def classifier(self, model: Path, device: str, dtype: str) -> Classifier:
        return Classifier(
            load_artifact(model), device, dtype, self.quantize, self.padding_free, self.autocast
        )

    def env(self) -> dict[str, str]:
        return {
            "SUPPORT_WORKER_MODEL__QUANTIZE": self.quantize,
            "SUPPORT_WORKER_MODEL__AUTOCAST": self.autocast,
            "SUPPORT_WORKER_MODEL__PADDING_FREE": str(self.padding_free).lower(),
        }


PADDED = Variant("padded", padding_free=False)
PACKED = Variant("padding-free")  # the worker's default
# Faster settings, each used for d_best_over_a only if no head loses more than 0.5 points.
CPU_FAST = (
    Variant("int8, padding-free", quantize="int8"),
    Variant("bf16 autocast, padding-free", autocast="bfloat16"),
)
MAX_ACCURACY_DROP = 0.005


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def run(args: Any) -> dict[str, Any]:
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    batching = BatchingSettings(
        max_batch_size=args.batch_size,
        max_batch_tokens=args.batch_tokens,
        max_wait_ms=args.max_wait_ms,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    pin_tokenizer_threads()  # as the worker does, so memory and C see the same setup
    loaded = load_artifact(args.model)
    base = PADDED.classifier(args.model, args.device, args.dtype)
    n = 1000 if quick else 5000
    examples, source = message_set(n)
    texts = [ex.text for ex in examples]
    base.warmup(args.batch_size)
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(base.device),
            "dtype": str(base.dtype),
        },
        "model": {
            **base.model_info,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
        },
        "batching": batching.model_dump(),
        "messages": {"source": source, "n": n, "tokens": length_stats(base, texts)},
        "repeats": repeats,
        "results": {},
    }
    r = report["results"]
    r["a_notebook_per_message"] = _median(
        [bench_a(loaded, texts[: 200 if quick else 1000]) for _ in range(repeats)]
    )
    r["b_notebook_batch"] = _median(
        [bench_b(loaded, texts, args.batch_size) for _ in range(repeats)]
    )

    # C for every variant, with its accuracy change against the padded base precision.
    variants = [PADDED, PACKED, *(CPU_FAST if base.device.type == "cpu" else ())]
    base_acc = head_accuracy(base, examples, args.batch_size)
    models: dict[str, Any] = {}
    for v in variants:
        clf = base if v is PADDED else v.classifier(args.model, args.device, args.dtype)
        clf.warmup(args.batch_size)
        runs = [bench_c(clf, texts, args.batch_size) for _ in range(repeats)]
        acc = base_acc if v is PADDED else head_accuracy(clf, examples, args.batch_size)
        change = {h: acc[h] - base_acc[h] for h in HEADS}
        models[v.name] = clf
        r.setdefault("c", {})[v.name] = {
            "precision": clf.precision,
            "msgs_per_s": _median([x["msgs_per_s"] for x in runs]),
            "runs": [x["msgs_per_s"] for x in runs],
            "full_batch_ms": _median([x["full_batch_ms"] for x in runs]),
            # What a padded batch of these messages would be (the same for every variant).
            "padding_fraction": runs[0]["padding_fraction"],
            "accuracy_change": change,
            "accuracy_ok": all(d >= -MAX_ACCURACY_DROP for d in change.values()),
        }
    c = r["c"]
    r["c_model_ceiling"] = c[PADDED.name]["msgs_per_s"]
    r["c_padding_fraction"] = c[PADDED.name]["padding_fraction"]
    r["c_full_batch_ms"] = c[PADDED.name]["full_batch_ms"]
    ok = [v for v in variants if c[v.name]["accuracy_ok"]]
    best = max(ok, key=lambda v: c[v.name]["msgs_per_s"])
    r["best_variant"] = best.name

    # Pydantic validation must not dominate: its cost per message beside the forward's.
    r["decode_us_per_msg"] = bench_decode(texts)
    forward_us = 1e6 / c[PACKED.name]["msgs_per_s"]
    no_overlap = batching.model_copy(update={"overlap": False})
    packed = models[PACKED.name]
    r["memory_pipeline"] = _median([bench_memory(packed, texts, batching) for _ in range(repeats)])
    r["memory_pipeline_no_overlap"] = _median(
        [bench_memory(packed, texts, no_overlap) for _ in range(repeats)]
    )
    ratios: dict[str, float | None] = {
        "decode_over_forward": r["decode_us_per_msg"] / forward_us,
        "memory_over_c": r["memory_pipeline"] / r["c_model_ceiling"],
        "memory_over_c_packed": r["memory_pipeline"] / c[PACKED.name]["msgs_per_s"],
    }
    if args.source == "kafka":
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
        env = {
            "SUPPORT_WORKER_BATCHING__MAX_BATCH_SIZE": str(args.batch_size),
            "SUPPORT_WORKER_BATCHING__MAX_BATCH_TOKENS": str(args.batch_tokens),
            "SUPPORT_WORKER_BATCHING__MAX_WAIT_MS": str(args.max_wait_ms),
            "SUPPORT_WORKER_MODEL__DEVICE": args.device,
            "SUPPORT_WORKER_MODEL__DTYPE": args.dtype,
        }
        if args.threads:
            env["SUPPORT_WORKER_MODEL__THREADS"] = str(args.threads)

        # Warm the broker first: a JVM started a minute ago is still compiling its hot
        # paths, and the workers measured first would pay for that (quick runs right
        # after `kafka up` measured D 10-30% low). F's bare loop, for a while, discarded.
        warm_until = time.monotonic() + (15 if quick else 30)
        while time.monotonic() < warm_until:
            bench_bare(bootstrap, texts, args.batch_size)

        def d(extra: dict[str, str]) -> dict[str, Any]:
            runs = [
                bench_worker(bootstrap, args.model, texts, {**env, **extra}) for _ in range(repeats)
            ]
            keys = ("msgs_per_s", "mean_batch", "mean_inference_ms")
            return {
                "runs": [x["msgs_per_s"] for x in runs],
                **{k: _median([x[k] for x in runs]) for k in keys},
            }

        r["d"] = {
            "padding-free": d(PACKED.env()),
            "padding-free, no overlap": d(
                {**PACKED.env(), "SUPPORT_WORKER_BATCHING__OVERLAP": "false"}
            ),
            "padded": d(PADDED.env()),
        }
        if best.name not in r["d"]:
            r["d"][best.name] = d(best.env())
        r["d_worker"] = r["d"][PACKED.name]["msgs_per_s"]
        r["d_worker_best"] = r["d"][best.name]["msgs_per_s"]
        null = {**env, "SUPPORT_WORKER_MODEL__BACKEND": "null"}
        r["f_worker_null_model"] = _median(
            [bench_worker(bootstrap, args.model, texts, null)["msgs_per_s"] for _ in range(repeats)]
        )
        r["f_bare_loop"] = _median(
            [bench_bare(bootstrap, texts, args.batch_size) for _ in range(repeats)]
        )
        lat = bench_latency(
            bootstrap, args.model, texts, 0.5 * r["d_worker"], 6 if quick else 20, env
        )
        r["e_latency"] = lat
        # The budget uses the forward pass the worker runs (padding-free, base precision).
        budget = args.max_wait_ms + 2 * c[PACKED.name]["full_batch_ms"]
        r["e_budget_ms"] = budget
        a = r["a_notebook_per_message"]
        ratios.update(
            d_over_c=r["d_worker"] / r["c_model_ceiling"],
            d_over_c_packed=r["d_worker"] / c[PACKED.name]["msgs_per_s"],
            d_over_a=r["d_worker"] / a,
            d_best_over_a=max(r["d_worker"], r["d_worker_best"]) / a,
            overlap_gain=r["d_worker"] / r["d"]["padding-free, no overlap"]["msgs_per_s"],
            f_over_bare=r["f_worker_null_model"] / r["f_bare_loop"],
            p99_over_budget=lat["p99_ms"] / budget,
        )
    report["ratios"] = ratios
    return report


def markdown(report: dict[str, Any]) -> str:
    r = report["results"]
    rows = [
        ("A notebook per-message", r.get("a_notebook_per_message")),
        ("B notebook batch", r.get("b_notebook_batch")),
    ]
    rows += [
        (
            f"C model only, {name} ({v['precision']}; full batch {v['full_batch_ms']:.0f} ms)",
            v["msgs_per_s"],
        )
        for name, v in r.get("c", {}).items()
    ]
    rows += [
        ("memory: worker pipeline, no Kafka", r.get("memory_pipeline")),
        ("memory: worker pipeline, no overlap", r.get("memory_pipeline_no_overlap")),
    ]
    rows += [
        (
            f"D worker end to end, {name} (mean batch {v['mean_batch']:.1f}, forward "
            f"{v['mean_inference_ms']:.0f} ms)",
            v["msgs_per_s"],
        )
        for name, v in r.get("d", {}).items()
    ]
    rows += [
        ("F worker, null model", r.get("f_worker_null_model")),
        ("F bare consume->produce loop", r.get("f_bare_loop")),
    ]
    lines = ["| measurement | msg/s |", "|---|---|"]
    lines += [f"| {name} | {v:,.0f} |" for name, v in rows if v is not None]
    if "c" in r:
        lines += ["", "| variant | accuracy change per head (points) |", "|---|---|"]
        lines += [
            f"| {name} | "
            + ", ".join(f"{h} {100 * d:+.2f}" for h, d in v["accuracy_change"].items())
            + " |"
            for name, v in r["c"].items()
        ]
    if "decode_us_per_msg" in r:
        lines += [
            "",
            f"decode (orjson + pydantic validation): {r['decode_us_per_msg']:.1f} µs per message",
        ]
    if "e_latency" in r:
        e = r["e_latency"]
        lines += [
            "",
            f"E latency at {e['rate']:.0f} msg/s: p50 {e['p50_ms']:.0f} ms, "
            f"p95 {e['p95_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms "
            f"(budget {r['e_budget_ms']:.0f} ms)",
        ]
    lines += [
        "",
        "ratios: "
        + ", ".join(
            f"{k}={v:.2f}" if v is not None else f"{k}=n/a" for k, v in report["ratios"].items()
        ),
    ]
    return "\n".join(lines)
