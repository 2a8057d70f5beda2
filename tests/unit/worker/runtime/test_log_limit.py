"""Repeated warnings are rate-limited per kind, and what was held back is counted."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from worker.runtime.log_limit import RateLimit


def _event(**fields: Any) -> dict[str, Any]:
    return {"event": "consumer_error", "level": "warning", **fields}


def _passes(limit: RateLimit, event: dict[str, Any]) -> bool:
    try:
        limit(None, "warning", event)
    except structlog.DropEvent:
        return False
    return True


def test_a_stuck_client_writes_burst_lines_per_window_and_then_the_count() -> None:
    now = [0.0]
    limit = RateLimit(window_s=10, burst=3, clock=lambda: now[0])
    # the same error at a changing offset twice a second: one kind
    written = [_passes(limit, _event(code="_BAD_COMPRESSION", offset=i)) for i in range(20)]
    assert written == [True] * 3 + [False] * 17
    now[0] = 10
    event = _event(code="_BAD_COMPRESSION")
    assert _passes(limit, event) and event["suppressed"] == 17


def test_kinds_are_told_apart_by_where_and_info_lines_are_never_limited() -> None:
    limit = RateLimit(window_s=10, burst=1, clock=lambda: 0.0)
    assert _passes(limit, _event(partition=0))
    assert _passes(limit, _event(partition=1))
    assert not _passes(limit, _event(partition=0))
    assert all(_passes(limit, {"event": "batch_committed", "level": "info"}) for _ in range(9))


def test_flush_reports_a_kind_that_went_quiet_with_a_count_owed() -> None:
    now = [0.0]
    limit = RateLimit(window_s=10, burst=1, clock=lambda: now[0])
    for _ in range(4):
        _passes(limit, _event(code="_TRANSPORT"))
    assert limit.flush() == []  # its window is still open
    now[0] = 11
    ((key, count),) = limit.flush()
    assert key[0] == "consumer_error" and "_TRANSPORT" in key and count == 3
    assert limit.flush() == []


@pytest.mark.parametrize("level", ["warning", "error"])
def test_errors_are_limited_too(level: str) -> None:
    limit = RateLimit(window_s=10, burst=2, clock=lambda: 0.0)
    ok = [_passes(limit, {"event": "kafka_step_retry", "level": level}) for _ in range(4)]
    assert ok == [True, True, False, False]
