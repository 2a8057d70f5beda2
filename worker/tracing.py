"""Traces of the loop, when the standard ``OTEL_*`` variables ask for them.

What the loop sees of tracing, without OpenTelemetry: the switch (``exporters``), the
W3C ``traceparent`` of a record read from untrusted bytes, and ``BatchTrace``, whose
methods this base class makes no-ops: tracing off is this class, so the loop does no
work per message for it. The SDK side (spans, exporters, the log processor) is
``worker.runtime.otel``, the one module that imports ``opentelemetry`` (the ``otel``
extra; tools/check_imports.py holds that rule); ``start`` loads it only when asked to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, ParamSpec, Protocol, TypeVar

import structlog
from structlog.typing import Processor

from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.codec import Headers
    from worker.intake import Item
    from worker.outgoing import Outgoing
    from worker.settings import WorkerSettings

log = structlog.get_logger("worker")
P = ParamSpec("P")
R = TypeVar("R")

TRACEPARENT = "traceparent"
EXPORTERS = ("otlp", "console")
# The only OTLP encoding the `otel` extra exports (opentelemetry-exporter-otlp-proto-http).
OTLP_PROTOCOL = "http/protobuf"
# Version 00 is exactly 55 characters; a later version may append fields after a "-". No
# header needs more than this; a longer one is refused before the pattern looks at it.
MAX_TRACEPARENT_BYTES = 256
_TRACEPARENT = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?"
)


class TraceContext(NamedTuple):
    """A valid W3C trace context: the trace, the span that sent the record, its flags."""

    trace_id: int
    span_id: int
    flags: int


def parse_traceparent(value: bytes | None) -> TraceContext | None:
    """A ``traceparent`` header value, or None when it is not a valid one.

    The W3C Trace Context rules: lowercase hex only, version ff is invalid, version 00
    has no trailing fields, an all-zero trace or span id is invalid. Bytes from Kafka are
    untrusted: anything else (too long, not ASCII, a null value) is None, never an error.
    """
    if value is None or len(value) > MAX_TRACEPARENT_BYTES:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    context = TraceContext(int(trace_id, 16), int(span_id, 16), int(flags, 16))
    return context if context.trace_id and context.span_id else None


def incoming(headers: Headers) -> TraceContext | None:
    """The trace context a record carries; None without exactly one valid traceparent
    (two are ambiguous, which W3C treats as none)."""
    found: list[bytes | None] = [v for k, v in headers if k == TRACEPARENT]
    return parse_traceparent(found[0]) if len(found) == 1 else None


def traceparent(context: TraceContext) -> bytes:
    """The version-00 header value for ``context``."""
    return b"00-%032x-%016x-%02x" % (context.trace_id, context.span_id, context.flags & 0xFF)


def with_traceparent(headers: Headers, value: bytes) -> Headers:
    """``headers`` with their traceparent replaced by ``value`` (added when absent)."""
    kept = [(k, v) for k, v in headers if k != TRACEPARENT]
    return [*kept, (TRACEPARENT, value)]


def exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The span exporters the ``OTEL_*`` variables ask for; () is tracing off.

    Off unless OTEL_TRACES_EXPORTER names an exporter or an OTLP endpoint is set (then
    ``otlp``); OTEL_SDK_DISABLED=true wins over both. A value this worker cannot honour
    is a bad setting (exit 2), named.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if names:
        chosen = tuple(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
        unknown = [n for n in chosen if n not in (*EXPORTERS, "none")]
        if unknown:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={names!r}: {unknown[0]!r} is not one of "
                f"{', '.join(EXPORTERS)} or none"
            )
        chosen = tuple(n for n in chosen if n != "none")
    else:
        endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        chosen = ("otlp",) if any(environ.get(e, "").strip() for e in endpoints) else ()
    if "otlp" in chosen:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(name, "").strip()
            if protocol:
                if protocol != OTLP_PROTOCOL:
                    raise ConfigError(
                        f"{name}={protocol!r}: the worker exports OTLP as {OTLP_PROTOCOL} only"
                    )
                break
    return chosen


class BatchTrace:
    """The spans of one batch. This base class is tracing off: each method does nothing
    and hands back what it was given, so the records go out as they came in."""

    def infer(self, forward: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``forward(*args)`` on the model thread, inside the batch's infer span."""
        return forward(*args, **kwargs)

    @contextmanager
    def current(self) -> Iterator[None]:
        """The batch's span is the current one (its ids go in log lines) meanwhile."""
        yield

    @contextmanager
    def commit(self) -> Iterator[None]:
        """The commit's span, current meanwhile."""
        yield

    def continued(self, items: Sequence[Item], outgoing: list[Outgoing]) -> list[Outgoing]:
        """``outgoing[i]`` for ``items[i]``, each result's traceparent continuing the
        message's own trace."""
        return outgoing

    def end(self, outcome: str, committed: int = 0) -> None:
        """The batch is done: ``committed``, or dropped (``aborted``, ``model_broken``,
        ``lost``, ...) to be read again."""


OFF = BatchTrace()


class Tracer(Protocol):
    def batch(self, items: Sequence[Item], opened_ns: int, model: Mapping[str, str]) -> BatchTrace:
        """The trace of a batch that opened at ``opened_ns`` (epoch ns) and closes now."""
        ...

    def close(self) -> None:
        """Export what is left, within a bounded wait."""
        ...


@dataclass(frozen=True)
class Traces:
    """What the environment asked for and got: a tracer (None: off), the log processors
    that put its trace ids in log lines, and why tracing is off though asked for."""

    tracer: Tracer | None = None
    log_processors: tuple[Processor, ...] = ()
    exporters: tuple[str, ...] = ()
    service: str | None = None
    unavailable: str | None = None

    def announce(self) -> None:
        """One log line, once logging is configured: on, or asked for and unavailable."""
        if self.tracer is not None:
            log.info("tracing", exporters=list(self.exporters), service=self.service)
        elif self.unavailable is not None:
            log.warning(
                "tracing_unavailable",
                exporters=list(self.exporters),
                error=self.unavailable,
                hint="pip install 'support-router[otel]'",
            )


def start(environ: Mapping[str, str], settings: WorkerSettings) -> Traces:
    """Tracing as ``environ`` asks: off (nothing loaded), or on through the SDK.

    Without the `otel` extra the worker runs untraced, and says so once (``announce``).
    """
    chosen = exporters(environ)
    if not chosen:
        return Traces()
    try:
        from worker.runtime import otel
    except ImportError as exc:
        return Traces(exporters=chosen, unavailable=str(exc))
    return otel.start(chosen, settings)
