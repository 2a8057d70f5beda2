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
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from schemas.labels import HEADS
from trainer.artifact import LoadedModel, load_artifact
from worker.admin import Health
from worker.inference import Classifier
from worker.metrics import Metrics
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.settings import BatchingSettings, WorkerSettings

REPO = Path(__file__).resolve().parent.parent


def message_set(n: int, seed: int = 7) -> tuple[list[Any], str]:
    """n labelled examples: CLINC test texts after augmentation (labels.md), else synthetic."""
    from trainer.data import clinc
    from trainer.data.splits import DataSpec, build

    path = clinc.default_path() or REPO.parent / "shared/data/clinc150/data_oos_plus.json"
    spec = DataSpec(clinc_path=path, seed=seed) if path.exists() else DataSpec(source="synthetic")
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
    return {"mean": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)),
            "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max())}  # fmt: skip


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
    """Forward passes only, on batches tokenized and padded in advance."""
    ids, _ = classifier.token_ids(texts)
    batches, real, padded = [], 0, 0
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        width = max(len(x) for x in chunk)
        arr = np.full((len(chunk), width), classifier.pad_id, dtype=np.int64)
        mask = np.zeros_like(arr)
        for r, x in enumerate(chunk):
            arr[r, : len(x)], mask[r, : len(x)] = x, 1
        batches.append((torch.from_numpy(arr).to(classifier.device),
                        torch.from_numpy(mask).to(classifier.device)))  # fmt: skip
        real, padded = real + int(mask.sum()), padded + mask.size
    times = []
    for input_ids, attention in batches:
        started = time.perf_counter()
        classifier.model(input_ids, attention)
        times.append(time.perf_counter() - started)
    full = [t for (x, _), t in zip(batches, times, strict=True) if len(x) == batch] or times
    return {"msgs_per_s": _rate(len(texts), sum(times)), "padding_fraction": 1 - real / padded,
            "full_batch_ms": statistics.median(full) * 1000}  # fmt: skip


class _MemoryMessage:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value, self._ts = offset, value, int(time.time() * 1000)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "memory"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return 1, self._ts


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


def bench_memory(classifier: Classifier, texts: Sequence[str], batching: BatchingSettings) -> float:
    """The worker's pipeline on in-memory records: no broker, same code from decode to bytes."""
    settings = WorkerSettings(mode="at_least_once", batching=batching)
    producer = _MemoryProducer()
    pipeline = Pipeline(settings, classifier, RoutingPolicy(), _MemoryConsumer(),  # type: ignore[arg-type]
                        producer, Metrics(), Health(stale_after_s=60))  # type: ignore[arg-type]  # fmt: skip
    msgs = [_MemoryMessage(i, orjson.dumps({"message_id": f"m{i}", "text": t}))
            for i, t in enumerate(texts)]  # fmt: skip
    started = time.perf_counter()
    for i in range(0, len(msgs), batching.max_batch_size):
        pipeline.accept(msgs[i : i + batching.max_batch_size])
        if len(pipeline.batcher):
            pipeline.process(pipeline.batcher.take())
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
        [NewTopic(n, num_partitions=partitions if r == "inbound" else 1, replication_factor=1)
         for r, n in names.items()]
    )  # fmt: skip
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
            self.proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], cwd=REPO,
                                         env=full, stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
        self.port = 0

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            body = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith((name + " ", name + "{")))  # fmt: skip

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
        return self.metric("support_messages_out_total") + self.metric("support_dead_letters_total")

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
            time.sleep(0.02)
        raise RuntimeError(f"bench worker did not finish {n} messages; see {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def bench_worker(bootstrap: str, model: Path, texts: Sequence[str], env: dict[str, str]) -> float:
    """D (and F with the null model): preload, start, time from ready to all committed."""
    topics = _topics(bootstrap, partitions=4)
    try:
        _preload(bootstrap, topics["inbound"], texts)
        w = _Worker(bootstrap, topics, model, env)
        try:
            w.wait_ready()
            # The clock starts at the first committed batch: joining the group and the
            # first fetch are start-up, not throughput.
            first, seconds = w.wait_done(len(texts))
            return _rate(len(texts) - int(first), seconds)
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
        c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"bare-{tag}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
        })  # fmt: skip
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


def bench_latency(bootstrap: str, model: Path, texts: Sequence[str], rate: float, seconds: float,
                  env: dict[str, str]) -> dict[str, float]:  # fmt: skip
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
        c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4().hex}",
            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
        })  # fmt: skip
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
        return {"rate": rate, "messages": len(lat), "p50_ms": float(q[0]), "p95_ms": float(q[1]),
                "p99_ms": float(q[2])}  # fmt: skip
    finally:
        _drop(bootstrap, topics)


# -- the run ------------------------------------------------------------------------


def run(args: Any) -> dict[str, Any]:
    quick = args.quick
    batching = BatchingSettings(max_batch_size=args.batch_size, max_batch_tokens=args.batch_tokens,
                                max_wait_ms=args.max_wait_ms)  # fmt: skip
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_artifact(args.model)
    classifier = Classifier(loaded, args.device, args.dtype)
    n = 1000 if quick else 5000
    examples, source = message_set(n)
    texts = [ex.text for ex in examples]
    classifier.warmup(args.batch_size)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "device": str(classifier.device), "dtype": str(classifier.dtype)},
        "model": {
            **classifier.model_info,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
        },
        "batching": batching.model_dump(),
        "messages": {"source": source, "n": n, "tokens": length_stats(classifier, texts)},
        "results": {},
    }  # fmt: skip
    r = report["results"]
    r["a_notebook_per_message"] = bench_a(loaded, texts[: 200 if quick else 1000])
    r["b_notebook_batch"] = bench_b(loaded, texts, args.batch_size)
    c = bench_c(classifier, texts, args.batch_size)
    r["c_model_ceiling"] = c["msgs_per_s"]
    r["c_padding_fraction"] = c["padding_fraction"]
    r["c_full_batch_ms"] = c["full_batch_ms"]
    r["memory_pipeline"] = bench_memory(classifier, texts, batching)
    # The faster setting: int8 dynamic quantization, kept only if no head loses > 0.5 points.
    int8 = Classifier(load_artifact(args.model), "cpu", "float32", quantize="int8")
    fp32_acc = head_accuracy(classifier, examples, args.batch_size)
    int8_acc = head_accuracy(int8, examples, args.batch_size)
    r["int8_accuracy_change"] = {h: int8_acc[h] - fp32_acc[h] for h in HEADS}
    int8_ok = all(d >= -0.005 for d in r["int8_accuracy_change"].values())
    r["c_model_ceiling_int8"] = bench_c(int8, texts, args.batch_size)["msgs_per_s"]
    ratios: dict[str, float | None] = {"memory_over_c": r["memory_pipeline"] / r["c_model_ceiling"]}
    if args.source == "kafka":
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
        env = {"SUPPORT_WORKER_BATCHING__MAX_BATCH_SIZE": str(args.batch_size),
               "SUPPORT_WORKER_BATCHING__MAX_BATCH_TOKENS": str(args.batch_tokens),
               "SUPPORT_WORKER_BATCHING__MAX_WAIT_MS": str(args.max_wait_ms),
               "SUPPORT_WORKER_MODEL__DEVICE": args.device,
               "SUPPORT_WORKER_MODEL__DTYPE": args.dtype}  # fmt: skip
        if args.threads:
            env["SUPPORT_WORKER_MODEL__THREADS"] = str(args.threads)
        r["d_worker"] = bench_worker(bootstrap, args.model, texts, env)
        null_env = {**env, "SUPPORT_WORKER_MODEL__BACKEND": "null"}
        r["f_worker_null_model"] = bench_worker(bootstrap, args.model, texts, null_env)
        if int8_ok:
            int8_env = {**env, "SUPPORT_WORKER_MODEL__QUANTIZE": "int8"}
            r["d_worker_int8"] = bench_worker(bootstrap, args.model, texts, int8_env)
        r["f_bare_loop"] = bench_bare(bootstrap, texts, args.batch_size)
        lat = bench_latency(
            bootstrap, args.model, texts, 0.5 * r["d_worker"], 6 if quick else 20, env
        )
        r["e_latency"] = lat
        budget = args.max_wait_ms + 2 * r["c_full_batch_ms"]
        r["e_budget_ms"] = budget
        ratios.update(d_over_c=r["d_worker"] / r["c_model_ceiling"],
                      d_over_a=r["d_worker"] / r["a_notebook_per_message"],
                      d_best_over_a=max(r["d_worker"], r.get("d_worker_int8", 0.0))
                      / r["a_notebook_per_message"],
                      f_over_bare=r["f_worker_null_model"] / r["f_bare_loop"],
                      p99_over_budget=lat["p99_ms"] / budget)  # fmt: skip
    report["ratios"] = ratios
    return report


def markdown(report: dict[str, Any]) -> str:
    r = report["results"]
    rows = [("A notebook per-message", r.get("a_notebook_per_message")),
            ("B notebook batch", r.get("b_notebook_batch")),
            ("C model-only ceiling (padded)", r.get("c_model_ceiling")),
            ("memory: worker pipeline, no Kafka", r.get("memory_pipeline")),
            ("C model-only ceiling, int8", r.get("c_model_ceiling_int8")),
            ("D worker end to end (broker)", r.get("d_worker")),
            ("D worker end to end, int8", r.get("d_worker_int8")),
            ("F worker, null model", r.get("f_worker_null_model")),
            ("F bare consume->produce loop", r.get("f_bare_loop"))]  # fmt: skip
    lines = ["| measurement | msg/s |", "|---|---|"]
    lines += [f"| {name} | {v:,.0f} |" for name, v in rows if v is not None]
    if "e_latency" in r:
        e = r["e_latency"]
        lines += [
            "",
            f"E latency at {e['rate']:.0f} msg/s: p50 {e['p50_ms']:.0f} ms, "
            f"p95 {e['p95_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms "
            f"(budget {r['e_budget_ms']:.0f} ms)",
        ]
    lines += ["", "ratios: " + ", ".join(f"{k}={v:.2f}" if v is not None else f"{k}=n/a"
                                         for k, v in report["ratios"].items())]  # fmt: skip
    return "\n".join(lines)
