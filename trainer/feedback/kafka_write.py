"""The collector's Kafka transaction: a chunk's dead letters and the feedback group's
offsets past the chunk, committed together or not at all (``worker.kafka.commit``'s protocol,
for a batch command that has no partitions to lose to a rebalance).

Errors go through ``worker.kafka.commit.classify``: retriable ones are called again until the
commit timeout (plus the transaction timeout inside a transaction); abortable ones abort,
replace dead letters the broker refused on their own merits with a smaller rung
(``worker.outgoing.step_down``) and commit again, at most ``MAX_ABORTS`` times; anything
else ends the run with one line. Nothing of an aborted chunk is visible, and its offsets
stay where they were, so the next try (or run) produces its dead letters once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from trainer.feedback.errors import FeedbackError, KafkaUnreachableError
from trainer.feedback.kafka_read import QuietErrors
from worker.kafka.clients import MAX_RECORD_BYTES, WorkerProducer
from worker.kafka.commit import RECORD_ERRORS, STEP_SLICE_S, Disposition, classify
from worker.outgoing import Outgoing, step_down
from worker.settings import WorkerSettings

MAX_ABORTS: Final = 5
RETRY_PAUSE_S: Final = 0.1
IN_TRANSACTION: Final = frozenset({"send_offsets_to_transaction", "commit_transaction"})


class _AbortedError(Exception):
    def __init__(self, err: KafkaError) -> None:
        super().__init__(err.str())
        self.err = err


def transactional_id(group: str) -> str:
    """One per group: a second run of the same group fences the first (init_transactions)."""
    return f"{group}-collect"


def producer(settings: WorkerSettings, group: str, errors: QuietErrors) -> Producer:
    conf: dict[str, Any] = settings.kafka.librdkafka(
        **{
            "transactional.id": transactional_id(group),
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            "log_level": 0,
            "error_cb": errors,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": MAX_RECORD_BYTES,
            "compression.type": "lz4",
        }
    )
    return WorkerProducer(conf)  # init_transactions serves error_cb while it waits


def init(p: Producer, settings: WorkerSettings, timeout: float) -> None:
    """Abort what an earlier run of this group left open, and fence one still going."""
    try:
        p.init_transactions(timeout)
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        if err.code() == KafkaError._TIMED_OUT:
            raise KafkaUnreachableError(
                f"Kafka at {settings.kafka.bootstrap_servers}: no transaction coordinator "
                f"answered within {timeout:.0f}s"
            ) from None
        raise FeedbackError(f"init_transactions: {err.name()}: {err.str()}") from None


def commit(
    p: Producer,
    c: Consumer,
    settings: WorkerSettings,
    letters: list[Outgoing],
    offsets: list[TopicPartition],
) -> list[Outgoing]:
    """Produce ``letters`` and commit ``offsets`` for ``c``'s group in one transaction;
    returns the letters as committed (a refused one replaced by its smaller rung)."""
    metadata = c.consumer_group_metadata()
    for _ in range(MAX_ABORTS):
        refused: dict[int, KafkaError] = {}
        try:
            _step(settings, "begin_transaction", lambda _t: p.begin_transaction())
            _produce_all(p, letters, refused)
            _step(
                settings,
                "send_offsets_to_transaction",
                lambda t: p.send_offsets_to_transaction(offsets, metadata, t),
            )
            _step(settings, "commit_transaction", p.commit_transaction)
            return letters
        except _AbortedError:
            p.poll(0)  # delivery reports name the refused records
            _step(settings, "abort_transaction", p.abort_transaction)
            letters = _replace_refused(letters, refused)
    raise FeedbackError(
        f"the feedback transaction aborted {MAX_ABORTS} times in a row; nothing of the open "
        "chunk was committed: run again to resume"
    )


def _produce_all(p: Producer, letters: list[Outgoing], refused: dict[int, KafkaError]) -> None:
    def report(i: int) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                refused[i] = err

        return on_delivery

    for i, out in enumerate(letters):
        while True:
            try:
                p.produce(
                    out.topic, out.value, out.key, headers=list(out.headers), on_delivery=report(i)
                )
                p.poll(0)
                break
            except BufferError:
                p.poll(0.05)  # the local queue is full: let deliveries drain
            except KafkaException as exc:
                refused[i] = exc.args[0]  # refused before it left, e.g. too large
                raise _AbortedError(refused[i]) from None


def _replace_refused(letters: list[Outgoing], refused: dict[int, KafkaError]) -> list[Outgoing]:
    out = list(letters)
    for i, err in refused.items():
        if classify(err) is Disposition.FATAL:  # a deleted DLQ, no permission: no retry helps
            raise FeedbackError(f"producing to {out[i].topic}: {err.name()}: {err.str()}")
        if err.code() not in RECORD_ERRORS:
            continue  # refused for the moment, not for what it is: the same letter again
        smaller = step_down(out[i])
        if smaller is None:
            raise FeedbackError(
                f"the broker refused a dead letter even as a pointer: {err.name()}: {err.str()}"
            )
        out[i] = smaller
    return out


def _step(settings: WorkerSettings, name: str, call: Callable[[float], Any]) -> None:
    """One transactional call, again while its error is retriable and time is left."""
    budget = settings.commit_timeout_s
    if name in IN_TRANSACTION:
        budget += settings.transaction_timeout_ms / 1000
    deadline = time.monotonic() + budget
    while True:
        try:
            call(max(0.1, min(STEP_SLICE_S, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            kind = classify(err)
            if kind is Disposition.ABORT and name != "abort_transaction":
                raise _AbortedError(err) from None
            if kind is not Disposition.RETRY or time.monotonic() >= deadline:
                raise FeedbackError(
                    f"{name}: {err.name()}: {err.str()}; the open chunk was not committed: "
                    "run again to resume"
                ) from None
            time.sleep(RETRY_PAUSE_S)
