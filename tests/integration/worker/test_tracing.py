"""Traces from a real worker process on the real broker, exported over OTLP/HTTP to a
receiver in this test, decoded with opentelemetry-proto: one span per batch with its
steps, links to the messages' traces, and each result's traceparent continuing them."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.integration.worker.harness import (
    MALFORMED,
    make_topics,
    message,
    read_committed,
    start_worker,
)
from worker.tracing import parse_traceparent

TRACED, UNTRACED, BAD = 60, 6, 4


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace endpoint: every span it is sent, with its resource's attributes."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Span] = []
        self.resources: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for rs in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                self.server.resources.append(attrs)
                for ss in rs.scope_spans:
                    self.server.spans.extend(ss.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _produce(bootstrap: str, topic: str) -> dict[str, bytes]:
    """Traced messages (a trace each), untraced ones (a traceparent that is not W3C) and
    malformed records; the traceparent sent with each, by message id or key."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    sent = {}
    for i in range(TRACED + UNTRACED):
        msg = message(i)
        tp = (
            f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" if i < TRACED else f"00-{i}-01"
        ).encode()
        p.produce(
            topic,
            key=msg["conversation_id"].encode(),
            value=json.dumps(msg).encode(),
            headers=[("traceparent", tp)],
        )
        sent[msg["message_id"]] = tp
    for i in range(BAD):
        tp = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01".encode()
        p.produce(topic, key=f"bad-{i}".encode(), value=MALFORMED[i], headers=[("traceparent", tp)])
        sent[f"bad-{i}"] = tp
    assert p.flush(30) == 0
    return sent


def test_a_worker_traces_each_batch_and_continues_each_message_s_trace(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    topics = make_topics(make_topic, partitions=2)
    sent = _produce(kafka_bootstrap, topics.inbound)
    tag = uuid.uuid4().hex[:8]
    w = start_worker(
        kafka_bootstrap,
        topics,
        tmp_path / "unused",  # the null model reads no artifact
        tmp_path,
        group=f"g-{tag}",
        txn_id=f"t-{tag}",
        MODEL__VARIANT="null",
        BATCHING__MAX_BATCH_SIZE="16",
        extra_env={
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    )
    try:
        w.wait_ready()
        got = read_committed(kafka_bootstrap, topics, len(sent))
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(30) == 0, w.tail()
    assert len(got.results) == TRACED + UNTRACED and len(got.dead) == BAD
    assert next(e for e in w.log_lines() if e["event"] == "tracing")["exporters"] == ["otlp"]
    assert {r["service.name"] for r in receiver.resources} == {"support-worker"}

    spans = {s.span_id: s for s in receiver.spans}
    batches = [s for s in spans.values() if s.name == "support.batch"]
    assert batches and all(not b.parent_span_id for b in batches)
    for b in batches:
        steps = sorted(s.name for s in spans.values() if s.parent_span_id == b.span_id)
        assert steps == ["support.commit", "support.consume", "support.infer"], steps
        assert b.kind == Span.SPAN_KIND_CONSUMER
    # Every valid incoming context is linked from the batch that committed it; the
    # traceparents that are not W3C are linked from none.
    linked = {(lk.trace_id.hex(), lk.span_id.hex()) for b in batches for lk in b.links}
    valid = {k: parse_traceparent(tp) for k, tp in sent.items()}
    wanted = {(f"{c.trace_id:032x}", f"{c.span_id:016x}") for c in valid.values() if c}
    assert linked == wanted and len(wanted) == TRACED + BAD

    batch_ids = {b.span_id for b in batches}
    for _, value, msg in got.results:
        header = dict(msg.headers())["traceparent"]
        incoming = valid[value["message_id"]]
        if incoming is None:
            assert header == sent[value["message_id"]]  # as it came in
            continue
        out = parse_traceparent(header)
        assert out is not None and out.trace_id == incoming.trace_id  # the message's trace
        route = spans[out.span_id.to_bytes(8, "big")]  # the router's span for it...
        assert route.name == "support.route"
        assert route.parent_span_id == incoming.span_id.to_bytes(8, "big")  # ...under the sender
        assert {lk.span_id for lk in route.links} <= batch_ids
    for key, headers in got.dead:  # a dead letter keeps the traceparent it came with
        assert headers["traceparent"] == sent[key]

    committed = [e for e in w.log_lines() if e["event"] == "batch_committed"]
    traces = {b.trace_id.hex() for b in batches}
    assert committed and all(e["trace_id"] in traces for e in committed)
