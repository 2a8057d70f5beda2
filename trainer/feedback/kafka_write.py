"""The collector's Kafka transaction: a chunk's dead letters and the feedback group's
offsets past the chunk, committed together or not at all (``worker.kafka.commit``'s protocol,
for a batch command that has no partitions to lose to a rebalance).

The transaction runs on ``worker.kafka.transaction``, the worker's own: retriable errors
are called again until the commit timeout (plus the transaction timeout inside a
transaction); abortable ones abort, replace dead letters the broker refused on their
own merits with a smaller rung (``worker.outgoing.step_down``) and commit again, at most
``MAX_ABORTS`` times; anything else ends the run with one line. Nothing of an aborted
chunk is visible, and its offsets stay where they were, so the next try (or run)
produces its dead letters once.
"""

from __future__ import annotations

from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from trainer.feedback.errors import FeedbackError, KafkaUnreachableError
from trainer.feedback.kafka_read import QuietErrors
from worker.kafka.clients import WorkerProducer, producer_options
from worker.kafka.transaction import (
    RECORD_ERRORS,
    AbortedError,
    Disposition,
    StepFailedError,
    Transactions,
    classify,
)
from worker.outgoing import Outgoing, step_down
from worker.settings import WorkerSettings

MAX_ABORTS: Final = 5


def transactional_id(group: str) -> str:
    """One per group: a second run of the same group fences the first (init_transactions)."""
    return f"{group}-collect"


def producer(settings: WorkerSettings, group: str, errors: QuietErrors) -> Producer:
    conf = producer_options(
        settings.kafka,
        errors,
        transactional_id(group),
        settings.transaction_timeout_ms,
        log_level=0,
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
    txn = Transactions(p, settings.commit_timeout_s, settings.transaction_timeout_ms)
    metadata = c.consumer_group_metadata()
    for _ in range(MAX_ABORTS):
        try:
            txn.run(letters, offsets, metadata)
            return letters
        except AbortedError as aborted:
            letters = _replace_refused(letters, aborted.refused)
        except StepFailedError as failed:
            raise FeedbackError(
                f"{failed}; the open chunk was not committed: run again to resume"
            ) from None
    raise FeedbackError(
        f"the feedback transaction aborted {MAX_ABORTS} times in a row; nothing of the open "
        "chunk was committed: run again to resume"
    )


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
