"""What tracing costs the worker's loop: messages per second, tracing off against on.

The loop from records to committed bytes without a broker, as ``memory`` runs it (intake,
batch, the model thread, route, serialize, the commit's produce calls), on the null model:
the model costs nothing, so whatever tracing adds shows at its largest. Four ways, run in
turn ``--repeats`` times, each reported with its median:

off           no tracer: what every worker does unless OTEL_* asks for traces
on-untraced   tracing on, messages without a traceparent: the batch's spans only
on-unsampled  every message with a valid traceparent whose sender did not sample it:
              a link each, and a route span that is not recorded
on-traced     every message with a valid traceparent: a link and a route span each;
              spans exported to nothing (the SDK's cost in the loop)
on-otlp       as on-traced, exported over OTLP/HTTP to a receiver in this process that
              reads and drops them (the encoding, on the SDK's export thread)

    python -m tools.bench.tracing [--batches 200] [--batch-size 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from schemas.labels import HEADS
from tools.bench.memory import _MemoryConsumer, _MemoryProducer
from worker import codec
from worker.health import Health
from worker.intake import intake
from worker.metrics import Metrics
from worker.model.protocol import NullClassifier
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.runtime import logs
from worker.runtime.otel import OtelTracer
from worker.settings import WorkerSettings

WAYS = ("off", "on-untraced", "on-unsampled", "on-traced", "on-otlp")


class Dropped(SpanExporter):
    """Takes every span and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def records(n: int, traced: bool, sampled: bool = True) -> list[codec.Record]:
    flags = "01" if sampled else "00"

    def headers() -> codec.Headers:
        if not traced:
            return []
        tp = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{flags}"
        return [("traceparent", tp.encode())]

    return [
        codec.Record(
            "memory",  # the topic and partition the memory bench's consumer owns
            0,
            i,
            b"k",
            orjson.dumps({"message_id": f"m{i}", "text": "my card was declined"}),
            headers(),
            None,
        )
        for i in range(n)
    ]


def run_once(
    recs: list[codec.Record], batch_size: int, exporter: Callable[[], SpanExporter] | None
) -> float:
    """Messages per second through the loop; ``exporter`` None: tracing off."""
    model = NullClassifier(dict(HEADS))
    provider = None
    if exporter is not None:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    producer = _MemoryProducer()
    pipeline = Pipeline(
        WorkerSettings(mode="at_least_once", batching={"max_batch_size": batch_size}),
        model,
        RoutingPolicy(),
        _MemoryConsumer(),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        Metrics(),
        Health(stale_after_s=60),
        tracer=None if provider is None else OtelTracer(provider, "memory", "bench"),
    )
    started = perf_counter()
    for i in range(0, len(recs), batch_size):
        for item in intake(recs[i : i + batch_size], model, 100_000):
            pipeline.batcher.add(item, len(item.ids))
        pipeline.dispatch()
    pipeline.drain()
    elapsed = perf_counter() - started
    pipeline._model_thread.shutdown(wait=True)
    if provider is not None:
        provider.shutdown()  # after the clock: export left over is not the loop's cost
    assert producer.count == len(recs), (producer.count, len(recs))
    return len(recs) / elapsed


def cpu_flags() -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line and line.strip())
    flags = fields.get("flags\t\t", fields.get("flags", "")).split()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")
    return {
        "model": fields.get("model name\t", "").strip(),
        "cores": info.count("processor\t:"),
        "flags": [f for f in wanted if f in flags],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    logs.configure("warning")  # a line per batch would be the loop's largest cost
    n = args.batches * args.batch_size
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    traced, untraced = records(n, traced=True), records(n, traced=False)
    unsampled = records(n, traced=True, sampled=False)
    ways: dict[str, tuple[list[codec.Record], Callable[[], SpanExporter] | None]] = {
        "off": (traced, None),
        "on-untraced": (untraced, Dropped),
        "on-unsampled": (unsampled, Dropped),
        "on-traced": (traced, Dropped),
        "on-otlp": (traced, lambda: OTLPSpanExporter(endpoint=endpoint)),
    }
    rates: dict[str, list[float]] = {w: [] for w in WAYS}
    run_once(traced[: args.batch_size * 10], args.batch_size, Dropped)  # warm: imports, JIT-less
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits each alike
        for way in WAYS:
            recs, exporter = ways[way]
            rates[way].append(run_once(recs, args.batch_size, exporter))
    sink.shutdown()
    off = statistics.median(rates["off"])
    report = {
        "messages_per_run": n,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "cpu": cpu_flags(),
        "median_msgs_per_s": {w: round(statistics.median(r)) for w, r in rates.items()},
        "vs_off": {w: round(statistics.median(r) / off, 3) for w, r in rates.items()},
        "runs": {w: [round(x) for x in r] for w, r in rates.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
