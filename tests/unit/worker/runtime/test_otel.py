"""The SDK side of tracing: a batch's spans, the continued traceparent, trace ids in log
lines, the provider the OTEL_* variables configure. Spans go to the SDK's in-memory
exporter."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.unit.worker.fakes import FlakyModel
from worker import codec
from worker.intake import Item, intake
from worker.outgoing import Outgoing, dead_letter
from worker.runtime import logs, otel
from worker.runtime.otel import OtelTracer, add_trace_ids
from worker.settings import WorkerSettings
from worker.tracing import parse_traceparent, start

TRACES = [f"{i:032x}" for i in (0xA1, 0xB2)]
SPANS = [f"{i:016x}" for i in (0xC3, 0xD4)]
MODEL = {"name": "fake", "version": "7", "content_hash": "0"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def _tracer(exporter: InMemorySpanExporter) -> OtelTracer:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracer(provider, "in", "group")


def _items() -> list[Item]:
    """Two traced messages, one with a broken traceparent, one untraced, one dead letter."""
    valid = [f"00-{t}-{s}-01".encode() for t, s in zip(TRACES, SPANS, strict=True)]
    headers: list[codec.Headers] = [
        [("traceparent", valid[0])],
        [("traceparent", valid[1]), ("x", b"y")],
        [("traceparent", b"00-2-01")],
        [],
        [("traceparent", valid[0])],
    ]
    values = [b'{"message_id": "m%d", "text": "hi"}' % i for i in range(4)] + [b"not json"]
    records = [
        codec.Record("in", i % 2, 10 + i, b"k", v, h, None)
        for i, (v, h) in enumerate(zip(values, headers, strict=True))
    ]
    return intake(records, FlakyModel(), 1000)


def _routed(items: list[Item]) -> list[Outgoing]:
    """Each item as the loop would produce it: results with their headers, a dead letter."""
    return [
        dead_letter(i.outcome, "dlq")
        if isinstance(i.outcome, codec.Rejected)
        else Outgoing("out", b"k", b"{}", codec.result_headers(i.record, "7"), route="escalate")
        for i in items
    ]


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_a_batch_is_one_span_with_its_steps_under_it_linked_to_each_message(
    spans: InMemorySpanExporter,
) -> None:
    items = _items()
    opened = time.time_ns() - 50_000_000
    batch = _tracer(spans).batch(items, opened, MODEL)
    assert batch.infer(sum, [1, 2]) == 3
    with batch.current():
        batch.continued(items, _routed(items))
        with batch.commit():
            pass
        batch.end("committed", len(items))
    found = _by_name(spans)
    [root] = found["support.batch"]
    assert root.parent is None and root.kind is SpanKind.CONSUMER
    assert root.start_time == opened and root.status.status_code is StatusCode.UNSET
    assert root.attributes is not None
    assert root.attributes["messaging.batch.message_count"] == 5
    assert root.attributes["messaging.destination.name"] == "in"
    assert root.attributes["messaging.consumer.group.name"] == "group"
    assert tuple(root.attributes["support.batch.partitions"]) == (0, 1)  # type: ignore[arg-type]
    assert root.attributes["support.model.version"] == "7"
    assert root.attributes["support.outcome"] == "committed"
    assert root.attributes["support.batch.committed"] == 5
    # A link per valid incoming context: the broken and the missing one have none.
    links = [(f"{lk.context.trace_id:032x}", f"{lk.context.span_id:016x}") for lk in root.links]
    assert links == [(TRACES[0], SPANS[0]), (TRACES[1], SPANS[1]), (TRACES[0], SPANS[0])]
    for name in ("support.consume", "support.infer", "support.commit"):
        [step] = found[name]
        assert step.parent is not None and step.parent.span_id == root.context.span_id, name
        assert step.context.trace_id == root.context.trace_id
    assert found["support.consume"][0].start_time == opened


def test_each_result_continues_its_message_s_trace_through_a_route_span(
    spans: InMemorySpanExporter,
) -> None:
    items = _items()
    sent = _routed(items)
    batch = _tracer(spans).batch(items, time.time_ns(), MODEL)
    out = batch.continued(items, sent)
    batch.end("committed", len(items))
    routes = {s.context.span_id: s for s in _by_name(spans)["support.route"]}
    [root] = _by_name(spans)["support.batch"]
    assert len(routes) == 3  # the two traced results and the traced dead letter
    for i in (0, 1):
        header = dict(out[i].headers)["traceparent"]
        context = parse_traceparent(header)
        assert context is not None and f"{context.trace_id:032x}" == TRACES[i]
        route = routes[context.span_id]  # the parent-id names the route span...
        assert route.parent is not None and f"{route.parent.span_id:016x}" == SPANS[i]
        assert route.parent.is_remote  # ...whose parent is the message's incoming span
        assert [lk.context.span_id for lk in route.links] == [root.context.span_id]
        assert route.attributes is not None and route.attributes["support.route"] == "escalate"
        assert header.endswith(b"-01")  # sampled, as the incoming context was
        assert dict(out[i].headers)["model-version"] == b"7"
    # Nothing to continue: the records go out as they came in, headers and all.
    assert out[2] is sent[2] and out[3] is sent[3]
    assert dict(out[2].headers)["traceparent"] == b"00-2-01"
    # A dead letter keeps its original headers (its contract); its span says why.
    assert out[4] is sent[4]
    [dead] = [s for s in routes.values() if s.status.status_code is StatusCode.ERROR]
    assert dead.attributes is not None and dead.attributes["support.dead_letter.stage"] == "decode"
    assert dead.parent is not None and f"{dead.parent.span_id:016x}" == SPANS[0]


def test_an_unsampled_message_stays_unsampled_downstream(spans: InMemorySpanExporter) -> None:
    record = codec.Record("in", 0, 1, None, b'{"message_id": "m", "text": "hi"}', [], None)
    record = replace(record, headers=[("traceparent", f"00-{TRACES[0]}-{SPANS[0]}-00".encode())])
    items = intake([record], FlakyModel(), 1000)
    batch = _tracer(spans).batch(items, time.time_ns(), MODEL)
    [out] = batch.continued(items, _routed(items))
    batch.end("committed", 1)
    header = dict(out.headers)["traceparent"]
    assert header.startswith(f"00-{TRACES[0]}-".encode()) and header.endswith(b"-00")
    assert "support.route" not in _by_name(spans)  # not recorded, as the sender asked


def test_a_dropped_batch_ends_once_as_an_error(spans: InMemorySpanExporter) -> None:
    items = _items()
    batch = _tracer(spans).batch(items, time.time_ns(), MODEL)
    batch.continued(items, _routed(items))
    batch.end("aborted")
    batch.end("committed", 5)  # too late: a batch ends once
    [root] = _by_name(spans)["support.batch"]
    assert root.status.status_code is StatusCode.ERROR and "aborted" in str(root.status.description)
    assert root.attributes is not None and root.attributes["support.outcome"] == "aborted"
    routes = _by_name(spans)["support.route"]  # their results were never committed
    assert {s.status.status_code for s in routes} == {StatusCode.ERROR}
    assert {s.status.description for s in routes} >= {"aborted: read again"}


def test_an_exception_while_current_ends_the_batch_with_it(spans: InMemorySpanExporter) -> None:
    batch = _tracer(spans).batch(_items(), time.time_ns(), MODEL)
    with pytest.raises(RuntimeError), batch.current():
        raise RuntimeError("fenced")
    [root] = _by_name(spans)["support.batch"]
    assert root.status.status_code is StatusCode.ERROR
    assert [e.name for e in root.events] == ["exception"]


def test_log_lines_carry_the_ids_of_the_current_span(spans: InMemorySpanExporter) -> None:
    batch = _tracer(spans).batch(_items(), time.time_ns(), MODEL)
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with batch.current():
        during = add_trace_ids(None, "info", {"event": "x"})
        with batch.commit():
            committing = add_trace_ids(None, "info", {"event": "y"})
    batch.end("committed")
    found = _by_name(spans)
    [root], [commit] = found["support.batch"], found["support.commit"]
    assert during["trace_id"] == f"{root.context.trace_id:032x}"
    assert during["span_id"] == f"{root.context.span_id:016x}"
    assert committing["trace_id"] == during["trace_id"]
    assert committing["span_id"] == f"{commit.context.span_id:016x}"


def test_configure_puts_the_extra_processor_before_the_renderer() -> None:
    try:
        logs.configure("info", None, (add_trace_ids,))
        chain = structlog.get_config()["processors"]
        assert add_trace_ids in chain
        assert chain.index(add_trace_ids) < len(chain) - 1
    finally:
        structlog.reset_defaults()


def test_the_service_is_support_worker_unless_otel_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    settings = WorkerSettings(transactional_id="t-1")
    traces = start({"OTEL_TRACES_EXPORTER": "console"}, settings)
    assert traces.service == "support-worker" and traces.tracer is not None
    assert traces.log_processors == (add_trace_ids,) and traces.exporters == ("console",)
    assert isinstance(traces.tracer, OtelTracer)
    resource = traces.tracer.provider.resource.attributes
    assert resource["service.instance.id"] == "t-1"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert otel.start(("console",), settings).service == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "router-eu")
    assert otel.start(("console",), settings).service == "router-eu"


def test_close_waits_a_bounded_time_for_a_collector_that_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}"
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
        monkeypatch.setattr(otel, "CLOSE_WAIT_S", 0.5)
        traces = otel.start(("otlp",), WorkerSettings())
        assert traces.tracer is not None
        batch = traces.tracer.batch(_items(), time.time_ns(), MODEL)
        batch.end("committed")
        began = time.monotonic()
        traces.tracer.close()
        assert time.monotonic() - began < 3
