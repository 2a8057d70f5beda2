"""structlog as JSON lines on stderr: one place configures it, and writes the
per-message lines of a committed batch."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from structlog.typing import Processor

from schemas.messages import HEADER_MESSAGE, HEADER_TYPE
from worker import codec
from worker.runtime.log_limit import LIMIT

if TYPE_CHECKING:
    # Types only: the supervisor of several workers (worker.runtime.processes) configures logging
    # too, and must not load the model's modules (numpy, and through them torch).
    from worker.intake import Item
    from worker.outgoing import Outgoing

log = structlog.get_logger("worker")


def configure(
    level: str = "info", process: int | None = None, extra: Sequence[Processor] = ()
) -> None:
    """``process``: the index the supervisor gave this worker (``process_index``); every
    line then carries it, since the workers of one host share its stderr. ``extra``:
    processors that add fields, such as the current trace's ids (worker.runtime.otel)
    when tracing is on; none otherwise, so tracing off costs no log line anything."""
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")

    def tag(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if process is not None:
            event["process"] = process
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tag,
            *extra,
            structlog.processors.add_log_level,
            LIMIT,  # repeated warnings and errors, rate-limited (worker.runtime.log_limit)
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write per line (print() writes the newline apart): the workers under one
        # supervisor (worker.runtime.processes) share this stderr, and two writes each let their
        # lines run into one another.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def log_committed(
    items: Sequence[Item],
    outgoing: Sequence[Outgoing],
    inference_ms: float,
    predicted: int,
    log_text: bool,
    debug: bool,
) -> None:
    """A line per dead letter (warning), per routed message (debug), and per batch.

    Message text reaches the log only with ``log_text``: support chats hold personal
    data. A dead letter's reason can quote the message (a metadata key is customer-chosen),
    so it is logged only with ``log_text`` too; it always travels with the dead letter.
    """
    for item, out in zip(items, outgoing, strict=True):
        if out.stage is None and not debug:
            continue  # a routed result, and no debug line to write: no work per message
        r = item.record
        where = {"topic": r.topic, "partition": r.partition, "offset": r.offset}
        if out.stage is not None:
            headers = dict(out.headers)
            extra = (
                {
                    "reason": (headers.get(HEADER_MESSAGE) or b"").decode(errors="replace"),
                    "value": (r.value or b"")[:200].decode(errors="replace"),
                }
                if log_text
                else {}
            )
            error_type = (headers.get(HEADER_TYPE) or b"").decode()
            log.warning("dead_letter", stage=out.stage, **where, error_type=error_type, **extra)
        elif debug and isinstance(item.outcome, codec.Accepted):
            text = {"text": item.outcome.text[:200]} if log_text else {}
            message_id = item.outcome.message_id
            log.debug("routed", message_id=message_id, **where, route=out.route, **text)
    log.info(
        "batch_committed",
        size=len(items),
        inference_ms=round(inference_ms, 2),
        model_items=predicted,
    )
