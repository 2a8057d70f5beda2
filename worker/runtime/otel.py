"""The OpenTelemetry SDK side of ``worker.tracing``: the provider and exporters the
``OTEL_*`` variables configure, the spans of a batch, and trace ids in log lines.

The one module that imports ``opentelemetry`` (the ``otel`` extra); ``worker.tracing``
loads it only when tracing is asked for. Attribute names follow OpenTelemetry's
semantic conventions for messaging where one fits (``messaging.*``, written out: the
conventions' own module is still incubating); the rest are ``support.*``.

A batch's span is a root of its own, linked to each message's incoming context: a
batch serves many traces, so it can be the child of none. Each message with a valid
``traceparent`` gets a short ``support.route`` span that IS a child of its incoming
span and is linked to the batch; its id is the outgoing result's traceparent, so the
message's trace goes on through the router to whoever reads the result.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context, trace
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from worker import tracing
from worker.tracing import BatchTrace, TraceContext, Traces

if TYPE_CHECKING:
    from worker.intake import Item
    from worker.outgoing import Outgoing
    from worker.settings import WorkerSettings

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_SERVICE = "support-worker"
SCOPE = "support-router.worker"
# At exit, queued spans get this long to reach the collector: an unreachable one must
# not hold the process past its shutdown grace (the SDK's own wait is 30 s).
CLOSE_WAIT_S = 3.0
_FAILED = ("aborted", "model_broken", "lost", "dropped", "error")


def start(exporters: Sequence[str], settings: WorkerSettings) -> Traces:
    """A provider with a batching processor per exporter; the SDK reads the rest of
    OTEL_* itself (endpoint, headers, timeout, sampler, span limits, OTEL_BSP_*)."""
    # Ours, unless OTEL_RESOURCE_ATTRIBUTES or OTEL_SERVICE_NAME say otherwise. The
    # instance is the replica's transactional.id: stable across its restarts, one per replica.
    ours = {SERVICE_NAME: DEFAULT_SERVICE, SERVICE_INSTANCE_ID: settings.transactional_id}
    resource = Resource.create({**ours, **OTELResourceDetector().detect().attributes})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    tracer = OtelTracer(provider, settings.topics.inbound, settings.group_id)
    return Traces(
        tracer=tracer,
        log_processors=(add_trace_ids,),
        exporters=tuple(exporters),
        service=str(resource.attributes.get(SERVICE_NAME)),
    )


def _exporter(name: str) -> SpanExporter:
    if name == "console":  # one JSON object per line on stdout (the logs are on stderr)
        return ConsoleSpanExporter(out=sys.stdout, formatter=_one_line)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace and span ids, when there is one
    (a batch's span while it is current, its infer and commit spans)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event["trace_id"] = trace.format_trace_id(span_context.trace_id)
        event["span_id"] = trace.format_span_id(span_context.span_id)
    return event


class OtelTracer:
    """``worker.tracing.Tracer`` through the SDK."""

    def __init__(self, provider: TracerProvider, topic: str, group: str) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE)
        self.topic, self.group = topic, group

    def batch(self, items: Sequence[Item], opened_ns: int, model: Mapping[str, str]) -> BatchTrace:
        return OtelBatch(self, items, opened_ns, model)

    def close(self) -> None:
        done = threading.Thread(target=self.provider.shutdown, name="otel-close", daemon=True)
        done.start()
        done.join(CLOSE_WAIT_S)


class OtelBatch(BatchTrace):
    """The spans of one batch: ``support.batch`` (opened -> committed or dropped), and
    under it ``support.consume`` (opened -> taken for the model), ``support.infer`` (the
    forward passes, on the model thread) and ``support.commit`` (the transaction)."""

    def __init__(
        self, owner: OtelTracer, items: Sequence[Item], opened_ns: int, model: Mapping[str, str]
    ) -> None:
        self.tracer, self.topic = owner.tracer, owner.topic
        self.opened_ns = opened_ns
        self.incoming = [tracing.incoming(item.record.headers) for item in items]
        links = [Link(_remote(c)) for c in self.incoming if c is not None]
        partitions = sorted({item.record.partition for item in items})
        self.span = self.tracer.start_span(
            "support.batch",
            kind=SpanKind.CONSUMER,
            start_time=opened_ns,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": owner.topic,
                "messaging.consumer.group.name": owner.group,
                "messaging.batch.message_count": len(items),
                "support.batch.partitions": partitions,
                "support.batch.traced_messages": len(links),
                "support.model.name": model["name"],
                "support.model.version": model["version"],
            },
        )
        self.context = trace.set_span_in_context(self.span)
        # The batch filled from its first record until the loop took it for the model:
        # consume, decode, validate, tokenize (spread over several consume() calls).
        self.tracer.start_span(
            "support.consume",
            context=self.context,
            kind=SpanKind.CLIENT,
            start_time=opened_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "receive",
                "messaging.operation.name": "consume",
                "messaging.destination.name": owner.topic,
                "messaging.batch.message_count": len(items),
            },
        ).end()
        self.routes: list[trace.Span] = []
        self.ended = False

    def infer(self, forward: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self.tracer.start_as_current_span("support.infer", context=self.context):
            return forward(*args, **kwargs)

    @contextmanager
    def current(self) -> Iterator[None]:
        token = context.attach(self.context)
        try:
            yield
        except BaseException as exc:
            if not self.ended:
                self.span.record_exception(exc)
                self.end("error")
            raise
        finally:
            context.detach(token)

    @contextmanager
    def commit(self) -> Iterator[None]:
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "settle",
            "messaging.operation.name": "commit",
            "messaging.destination.name": self.topic,
        }
        with self.tracer.start_as_current_span(
            "support.commit", context=self.context, kind=SpanKind.CLIENT, attributes=attributes
        ):
            yield

    def continued(self, items: Sequence[Item], outgoing: list[Outgoing]) -> list[Outgoing]:
        link = [Link(self.span.get_span_context())]
        out = list(outgoing)
        for i, parent in enumerate(self.incoming):
            if parent is None:
                continue  # nothing to continue: the record goes out as it came in
            record, result = items[i].record, out[i]
            attributes: dict[str, str | int] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
            }
            if result.stage is not None:
                attributes["support.dead_letter.stage"] = result.stage
            elif result.route is not None:
                attributes["support.route"] = result.route
            # Everything at start: the SDK costs about as much per later call as per span.
            span = self.tracer.start_span(
                "support.route",
                context=trace.set_span_in_context(trace.NonRecordingSpan(_remote(parent))),
                kind=SpanKind.CONSUMER,
                links=link,
                # From the batch's opening: the time the message spent in the router.
                start_time=self.opened_ns,
                attributes=attributes,
            )
            self.routes.append(span)
            if result.stage is not None:
                # The dead letter keeps the original headers, traceparent included (its
                # contract; a replay continues the original trace); the span says why.
                span.set_status(Status(StatusCode.ERROR, f"dead letter ({result.stage})"))
                continue
            ctx = span.get_span_context()
            value = tracing.traceparent(TraceContext(ctx.trace_id, ctx.span_id, ctx.trace_flags))
            out[i] = replace(result, headers=tracing.with_traceparent(result.headers, value))
        return out

    def end(self, outcome: str, committed: int = 0) -> None:
        if self.ended:
            return
        self.ended = True
        now = time.time_ns()
        failed = outcome in _FAILED
        status = Status(StatusCode.ERROR, f"{outcome}: read again") if failed else None
        for span in self.routes:
            if status is not None:  # the result was never committed: no one reads it
                span.set_status(status)
            span.end(now)
        self.span.set_attribute("support.outcome", outcome)
        self.span.set_attribute("support.batch.committed", committed)
        if status is not None:
            self.span.set_status(status)
        self.span.end(now)


def _remote(c: TraceContext) -> SpanContext:
    return SpanContext(c.trace_id, c.span_id, is_remote=True, trace_flags=TraceFlags(c.flags))
