"""The worker's traces in Jaeger: a run end to end, and what Jaeger's query API answers.

Starts Jaeger v2 (``make jaeger``; deploy/jaeger/local.yaml, free ports), makes topics of
its own on the broker at KAFKA_BOOTSTRAP_SERVERS (it starts no broker: ``make kafka-up``),
starts a worker with OTLP/HTTP to Jaeger, and sends messages as a traced chat platform
would: each from a ``chat.send`` span of a service ``chat-platform``, exported to the same
Jaeger, whose context is the record's traceparent. Once every result is committed and
the worker has stopped (its spans flushed), it asks ``/api/traces?service=support-worker``
for the batches and ``/api/traces/<id>`` for one message's trace, and prints both.

    python -m tools.jaeger_demo [--messages 40] [--model models/current] [--keep]

Without ``--model`` the worker serves the null model (no artifact needed). ``--keep``
leaves Jaeger running for its UI (the address is printed) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tools import REPO, worker_proc

JAEGER = REPO / ".tools" / "jaeger-1.75.0" / "jaeger"
CONFIG = REPO / "deploy" / "jaeger" / "local.yaml"
ROLES = ("inbound", "escalate", "auto_resolve", "more_info", "dlq")
TEXTS = ("my card was declined", "WHERE IS MY REFUND", "how do i reset my pin", "hours?")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def start_jaeger(log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """Jaeger on free ports; its OTLP/HTTP port and its query port, once it answers."""
    if not JAEGER.exists():
        sys.exit(f"{JAEGER} is missing: run `make jaeger` first")
    otlp, query = free_port(), free_port()
    env = {
        **os.environ,
        "JAEGER_OTLP_HTTP_PORT": str(otlp),
        "JAEGER_QUERY_PORT": str(query),
        "JAEGER_QUERY_GRPC_PORT": str(free_port()),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(JAEGER), "--config", str(CONFIG)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"jaeger exited with {proc.returncode}; see {log}")
        try:
            get_json(f"http://127.0.0.1:{query}/api/services")
            return proc, otlp, query
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    sys.exit(f"jaeger did not answer within 60 s; see {log}")


def send(bootstrap: str, topic: str, n: int, otlp: int) -> dict[str, str]:
    """n messages, each from a chat.send span of its own trace; message id -> traceparent."""
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-platform"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("tools.jaeger_demo")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    sent = {}
    for i in range(n):
        msg = {"message_id": f"jd-{i}", "conversation_id": f"c{i}", "text": TEXTS[i % len(TEXTS)]}
        span = tracer.start_span("chat.send", kind=trace.SpanKind.PRODUCER)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        producer.produce(
            topic,
            key=msg["conversation_id"].encode(),
            value=json.dumps(msg).encode(),
            headers=[("traceparent", carrier["traceparent"].encode())],
        )
        span.end()
        sent[msg["message_id"]] = carrier["traceparent"]
    producer.flush(30)
    provider.shutdown()
    return sent


def read_results(bootstrap: str, topics: dict[str, str], n: int) -> dict[str, str]:
    """Committed results: message id -> the traceparent the worker gave it."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"jaeger-demo-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topics[r] for r in ROLES[1:4]])
    out: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(100, timeout=0.5):
            # Our own topics, our own records: headers() is safe here (worker.kafka.headers)
            value, traceparent = m.value(), dict(m.headers() or []).get("traceparent")
            if m.error() is None and value is not None and isinstance(traceparent, bytes):
                out[json.loads(value)["message_id"]] = traceparent.decode()
    c.close()
    return out


def summarize(query: int, sent: dict[str, str], got: dict[str, str]) -> dict[str, Any]:
    """What Jaeger holds: the batches, and one message's trace through the router."""
    base = f"http://127.0.0.1:{query}/api"
    batches = get_json(f"{base}/traces?service=support-worker&limit=100")["data"]
    roots = []
    for t in batches:
        by_id = {s["spanID"]: s for s in t["spans"]}
        for s in t["spans"]:
            if s["operationName"] != "support.batch":
                continue
            tags = {tag["key"]: tag["value"] for tag in s["tags"]}
            children = sorted(
                c["operationName"]
                for c in t["spans"]
                if any(
                    r["refType"] == "CHILD_OF" and r["spanID"] == s["spanID"]
                    for r in c["references"]
                )
            )
            links = [r for r in s["references"] if r["spanID"] not in by_id]
            roots.append(
                {
                    "trace_id": t["traceID"],
                    "duration_ms": s["duration"] / 1000,
                    "messages": tags.get("messaging.batch.message_count"),
                    "partitions": tags.get("support.batch.partitions"),
                    "model_version": tags.get("support.model.version"),
                    "children": children,
                    "links": len(links),
                }
            )
    message_id = sorted(got)[0]
    incoming, outgoing = sent[message_id], got[message_id]
    one = get_json(f"{base}/traces/{incoming.split('-')[1]}")["data"][0]
    services = {k: p["serviceName"] for k, p in one["processes"].items()}
    spans = [
        {
            "service": services[s["processID"]],
            "name": s["operationName"],
            "span_id": s["spanID"],
            "parent": next(
                (r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"), None
            ),
            "duration_ms": s["duration"] / 1000,
        }
        for s in sorted(one["spans"], key=lambda s: s["startTime"])
    ]
    return {
        "batch_traces": len(roots),
        "batches": roots,
        "children_per_batch": dict(Counter(" ".join(r["children"]) for r in roots)),
        "links_total": sum(r["links"] for r in roots),
        "message": {"id": message_id, "sent": incoming, "result": outgoing, "spans": spans},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--model", type=Path, help="an artifact; default: the null model")
    ap.add_argument("--keep", action="store_true", help="leave Jaeger up until Ctrl-C")
    args = ap.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS (make kafka-up prints it)")
    work = Path(tempfile.mkdtemp(prefix="jaeger-demo-"))
    jaeger, otlp, query = start_jaeger(work / "jaeger.log")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tag = uuid.uuid4().hex[:8]
    topics = {role: f"jaeger-demo.{role}.{tag}" for role in ROLES}
    for future in admin.create_topics(
        [NewTopic(t, 2 if r == "inbound" else 1) for r, t in topics.items()]
    ).values():
        future.result(30)
    settings = {"model__threads": "1", "batching__max_batch_size": "16"}
    if args.model is None:
        settings["model__variant"] = "null"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp}",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }
    worker = worker_proc.start(
        bootstrap,
        topics,
        args.model or work / "unused",
        work / "worker.log",
        group=f"jaeger-demo-{tag}",
        txn_id=f"jaeger-demo-{tag}",
        settings=settings,
        extra_env=env,
    )
    try:
        worker.wait_ready()
        sent = send(bootstrap, topics["inbound"], args.messages, otlp)
        got = read_results(bootstrap, topics, args.messages)
        worker.signal(signal.SIGTERM)
        print(f"worker exited {worker.wait(30)}; {len(got)}/{len(sent)} results committed")
        time.sleep(2)  # Jaeger's batch processor stores what it received
        print(json.dumps(summarize(query, sent, got), indent=2))
        if args.keep:
            print(f"Jaeger UI: http://127.0.0.1:{query}/  (Ctrl-C stops it)")
            jaeger.wait()
    finally:
        if worker.proc.poll() is None:
            worker.kill()
        jaeger.terminate()
        jaeger.wait(30)
        for future in admin.delete_topics(list(topics.values())).values():
            future.exception(30)
    print(f"logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
