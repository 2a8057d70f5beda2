"""What a committed batch writes to the log, and what it never writes."""

from __future__ import annotations

import orjson
from structlog.testing import capture_logs

from worker import codec
from worker.intake import Item
from worker.logs import log_committed
from worker.outgoing import dead_letter
from worker.settings import WorkerSettings


def _rejected() -> tuple[Item, codec.Rejected]:
    value = orjson.dumps(
        {"message_id": "x", "text": "hi", "metadata": {"jane.doe@example.com": {}}}
    )
    rec = codec.Record("in", 0, 1, None, value, [], None)
    rejected = codec.decode(rec, 1000)
    assert isinstance(rejected, codec.Rejected) and "jane.doe" in rejected.reason
    return Item(rec, rejected, []), rejected


def test_the_dead_letter_log_line_never_quotes_the_message() -> None:
    """Issue 9, defect 10: a validation reason can name customer-chosen metadata keys."""
    item, rejected = _rejected()
    out = dead_letter(rejected, WorkerSettings().topics.dlq)
    with capture_logs() as logs:
        log_committed([item], [out], 0.0, 0, log_text=False, debug=True)
    (line,) = [e for e in logs if e["event"] == "dead_letter"]
    assert "jane.doe" not in repr(line) and line["error_type"] == "ValidationError"
    assert line["stage"] == "validate"


def test_log_text_adds_the_reason_when_asked() -> None:
    item, rejected = _rejected()
    out = dead_letter(rejected, WorkerSettings().topics.dlq)
    with capture_logs() as logs:
        log_committed([item], [out], 0.0, 0, log_text=True, debug=False)
    (line,) = [e for e in logs if e["event"] == "dead_letter"]
    assert "jane.doe" in line["reason"]
