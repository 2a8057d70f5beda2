"""The tracing switch and the untrusted traceparent, without the SDK; and a worker that
imports and runs untraced without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO
from worker.errors import ConfigError
from worker.tracing import (
    MAX_TRACEPARENT_BYTES,
    OFF,
    TraceContext,
    exporters,
    incoming,
    parse_traceparent,
    traceparent,
    with_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01".encode()


def test_a_valid_traceparent_is_read() -> None:
    assert parse_traceparent(VALID) == TraceContext(int(TRACE, 16), int(SPAN, 16), 1)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode()) == (int(TRACE, 16), int(SPAN, 16), 0)
    # A later version may carry more fields after the four it shares with 00.
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-more".encode()) is not None


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"00-1-01",  # what the test fixtures and the old demo send
        f"00-{TRACE.upper()}-{SPAN}-01".encode(),  # lowercase hex only
        f"ff-{TRACE}-{SPAN}-01".encode(),  # version ff is invalid
        f"00-{TRACE}-{SPAN}-01-extra".encode(),  # version 00 has exactly four fields
        f"00-{'0' * 32}-{SPAN}-01".encode(),  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01".encode(),  # all-zero parent id
        f"00-{TRACE[:-1]}-{SPAN}-01".encode(),
        f" 00-{TRACE}-{SPAN}-01".encode(),
        f"00-{TRACE}-{SPAN}-01\n".encode(),
        f"00-{TRACE}-{SPAN}-0g".encode(),
        VALID.replace(b"4bf", "4bé".encode()),  # not ASCII
        b"\xff\xfe" + VALID,
        f"01-{TRACE}-{SPAN}-01-".encode() + b"x" * MAX_TRACEPARENT_BYTES,  # oversized
    ],
)
def test_an_invalid_traceparent_is_none_never_an_error(value: bytes | None) -> None:
    assert parse_traceparent(value) is None


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_none(value: bytes) -> None:
    context = parse_traceparent(value)
    assert context is None or traceparent(context) == value[:55]


def test_a_record_needs_exactly_one_traceparent() -> None:
    assert incoming([("x", b"1"), ("traceparent", VALID)]) == parse_traceparent(VALID)
    assert incoming([("traceparent", VALID), ("traceparent", VALID)]) is None  # ambiguous
    assert incoming([("Traceparent", VALID)]) is None  # Kafka header keys are case-sensitive
    assert incoming([("traceparent", None)]) is None
    assert incoming([]) is None


def test_the_outgoing_header_replaces_the_incoming_one() -> None:
    out = traceparent(TraceContext(1, 2, 1))
    assert out == b"00-" + b"0" * 31 + b"1-" + b"0" * 15 + b"2-01"
    headers = [("traceparent", b"00-1-01"), ("n", None), ("model-version", b"7")]
    assert with_traceparent(headers, out) == [
        ("n", None),
        ("model-version", b"7"),
        ("traceparent", out),
    ]
    assert with_traceparent([], out) == [("traceparent", out)]


@pytest.mark.parametrize(
    ("environ", "chosen"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": " OTLP, console,otlp "}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}, ()),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ("otlp",),
        ),
        # The traces' own protocol wins over the general one.
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            ("otlp",),
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("console",)),
    ],
)
def test_tracing_is_off_unless_otel_variables_ask_for_it(
    environ: dict[str, str], chosen: tuple[str, ...]
) -> None:
    assert exporters(environ) == chosen


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_TRACES_EXPORTER": "otlp,jaegr"}, "'jaegr' is not one of otlp, console"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'",
        ),
    ],
)
def test_a_value_the_worker_cannot_honour_is_a_bad_setting(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        exporters(environ)


def test_tracing_off_hands_everything_back_unchanged() -> None:
    outgoing: list = []  # type: ignore[type-arg]
    assert OFF.continued([], outgoing) is outgoing
    assert OFF.infer(divmod, 7, 2) == (3, 1)
    with OFF.current(), OFF.commit():
        OFF.end("committed", 3)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


START = """
import json, sys
{hide}
from worker import cli, pipeline, service, tracing
from worker.runtime import logs
from worker.settings import WorkerSettings
traces = tracing.start(__import__("os").environ, WorkerSettings())
logs.configure("info", None, traces.log_processors)
traces.announce()
loaded = [m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v is not None]
print(json.dumps([traces.tracer is None, bool(loaded)]))
"""


def test_tracing_off_loads_no_opentelemetry() -> None:
    done = _python(START.format(hide=""))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [True, False]
    assert done.stderr == ""


def test_without_the_otel_extra_the_worker_runs_untraced_and_says_so_once() -> None:
    """As the default install (`pip install support-router`) has it: no opentelemetry."""
    hide = "sys.modules['opentelemetry'] = None  # an import raises, as when not installed"
    done = _python(START.format(hide=hide), OTEL_TRACES_EXPORTER="console")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [True, False]
    [line] = [json.loads(x) for x in done.stderr.splitlines()]
    assert line["event"] == "tracing_unavailable" and line["exporters"] == ["console"]
    assert "support-router[otel]" in line["hint"]
