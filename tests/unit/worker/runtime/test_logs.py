"""What a committed batch writes to the log, and what it never writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
from structlog.testing import capture_logs

from tests.conftest import REPO
from worker import codec
from worker.intake import Item
from worker.outgoing import dead_letter
from worker.runtime.logs import log_committed
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


WRITER = """
import sys
import structlog
from worker.runtime import logs
logs.configure("info", int(sys.argv[1]))
for i in range(2000):
    structlog.get_logger("worker").info("line", i=i, pad="x" * 200)
"""


def test_processes_sharing_one_stderr_write_whole_lines_tagged_with_their_index(
    tmp_path: Path,
) -> None:
    """The workers of one supervisor (worker.runtime.processes) share its stderr: a line written
    in two pieces (print's text, then its newline) ran into another process's."""
    path = tmp_path / "shared.log"
    with path.open("wb") as shared:
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER, str(k)], cwd=REPO, stderr=shared)
            for k in range(4)
        ]
        assert [w.wait(60) for w in writers] == [0] * 4
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((e["process"], e["i"]) for e in lines) == [
        (k, i) for k in range(4) for i in range(2000)
    ]
