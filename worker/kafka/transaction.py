"""One transactional producer: the steps of a Kafka transaction, their retries, and the
produce loop, for every program that writes records and consumer offsets together.

The commit protocol (``worker.kafka.commit``), DLQ replay (``worker.ops.replay_kafka``)
and the feedback collector (``trainer.feedback.kafka_write``) each decide what a refused
record becomes and what a failure means to them; this module decides how a step is
called:

- ``classify`` sorts every Kafka error into retry, abort or fatal: the one table.
- ``Transactions.step`` calls one step in slices of ``STEP_SLICE_S`` (the caller's
  heartbeat between them), again while its error is retriable, until
  ``commit_timeout_s``, plus ``transaction_timeout_ms`` for the two steps inside an open
  transaction: a broker frozen for a while costs a wait, not a restart. A step still
  failing then leaves the outcome unknown: ``StepFailedError``. A call that never returns
  (librdkafka ignoring its timeout) is ended by ``worker.kafka.watchdog``.
- ``Transactions.produce_all`` produces records, waiting while the local queue is full
  and noting per record what the client or the broker refused.
- ``Transactions.run`` is begin, produce, send offsets, commit. Any failure but a fatal
  one aborts the transaction and raises ``AbortedError``, naming the refused records.

The clients' configs are ``worker.kafka.clients``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from worker import codec
from worker.kafka.watchdog import Watchdog

log = structlog.get_logger("worker")

# One blocking call at most this long, so the caller's heartbeat (/healthz) stays fresh
# through a long broker failover; the step is called again until its deadline.
STEP_SLICE_S = 5.0
RETRY_PAUSE_S = 0.1  # an error that returns at once must not spin
IN_TRANSACTION = frozenset({"send_offsets_to_transaction", "commit_transaction"})


class Disposition(Enum):
    RETRY = "retry"  # the same call again
    ABORT = "abort"  # abort the transaction; the caller decides what comes next
    FATAL = "fatal"  # this process cannot go on


# Delivery errors about the record itself: no retry can help; it is replaced.
RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.POLICY_VIOLATION,
    }
)
# Errors about where we write or who we are: retrying would loop; a person must act.
FATAL_ERRORS = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    }
)
FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def classify(err: KafkaError) -> Disposition:
    """The one table: what to do about a Kafka error from any step of a transaction."""
    if err.fatal() or err.code() in FATAL_ERRORS:
        return Disposition.FATAL
    if err.txn_requires_abort():
        return Disposition.ABORT
    if err.retriable():
        return Disposition.RETRY
    # Unknown and not flagged (e.g. _STATE after a failed step): abort; each caller
    # bounds how often in a row.
    return Disposition.ABORT


class Sendable(Protocol):
    """A record to produce: a result, a dead letter, a replay."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> codec.Headers: ...


class AbortedError(Exception):
    """The transaction was aborted; ``refused`` maps record positions to their errors."""

    def __init__(self, err: KafkaError, refused: dict[int, KafkaError] | None = None) -> None:
        super().__init__(err.str())
        self.err, self.refused = err, refused or {}


class StepFailedError(Exception):
    """A step failed for good (a fatal error, or still failing at its deadline)."""

    def __init__(self, step: str, err: KafkaError, detail: str = "") -> None:
        super().__init__(f"{step}: {err.name()}: {err.str()}" + (f" ({detail})" if detail else ""))
        self.step, self.err, self.detail = step, err, detail


@dataclass
class Transactions:
    """The steps of a transaction on one transactional ``producer``."""

    producer: Producer
    commit_timeout_s: float
    transaction_timeout_ms: int
    beat: Callable[[], None] = lambda: None  # between slices: the caller's heartbeat
    watchdog: Watchdog = field(default_factory=Watchdog)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def run(
        self, records: Sequence[Sendable], offsets: list[TopicPartition], group_metadata: Any
    ) -> None:
        """Produce ``records`` and commit ``offsets`` for the group, all or nothing."""
        refused: dict[int, KafkaError] = {}
        self.step("begin_transaction", lambda _timeout: self.producer.begin_transaction())
        try:
            self.produce_all(records, refused)
            if refused:
                raise KafkaException(next(iter(refused.values())))
            self.step(
                "send_offsets_to_transaction",
                lambda t: self.producer.send_offsets_to_transaction(offsets, group_metadata, t),
            )
            self.step("commit_transaction", self.producer.commit_transaction)
        except KafkaException as exc:
            err = exc.args[0]
            # A refused record is judged per record after the abort, by the caller.
            if not refused and classify(err) is Disposition.FATAL:
                raise StepFailedError("produce", err) from None
            self.abort()
            raise AbortedError(err, refused) from None
        except AbortedError as aborted:
            self.abort()
            raise AbortedError(aborted.err, refused) from None

    def step(self, name: str, call: Callable[[float], Any], abort_is_fatal: bool = False) -> None:
        """One call, again while its error is retriable and time is left (module doc).

        ``AbortedError`` when the error asks for an abort (``StepFailedError`` instead where an
        abort cannot help: ``abort_is_fatal``, for init and abort themselves).
        """
        budget = self.commit_timeout_s
        if name in IN_TRANSACTION:
            budget += self.transaction_timeout_ms / 1000
        deadline = self.clock() + budget
        while True:
            self.beat()
            timeout = max(0.1, min(STEP_SLICE_S, deadline - self.clock()))
            try:
                with self.watchdog.guard(name, timeout):
                    call(timeout)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                kind = classify(err)
                if kind is Disposition.FATAL or (kind is Disposition.ABORT and abort_is_fatal):
                    raise StepFailedError(name, err) from None
                if kind is Disposition.ABORT:
                    raise AbortedError(err) from None
                if self.clock() >= deadline:
                    raise StepFailedError(
                        name, err, f"still failing after {budget:.0f}s, outcome unknown"
                    ) from None
                log.warning("kafka_step_retry", step=name, error=err.str())
                self.sleep(RETRY_PAUSE_S)

    def abort(self) -> None:
        # Serve delivery reports before and after: they name the refused records (the
        # purge that abort causes adds _PURGE_QUEUE reports, which name nobody).
        self.producer.poll(0)
        self.step("abort_transaction", self.producer.abort_transaction, abort_is_fatal=True)
        self.producer.poll(0)

    def produce_all(self, records: Sequence[Sendable], refused: dict[int, KafkaError]) -> None:
        """Produce every record; ``refused[i]``: what the client or broker refused."""

        def report(i: int) -> Callable[[KafkaError | None, Any], None]:
            def on_delivery(err: KafkaError | None, _msg: Any) -> None:
                if err is not None:
                    refused[i] = err

            return on_delivery

        for i, out in enumerate(records):
            where: dict[str, Any] = {}
            partition = getattr(out, "partition", None)  # a replay keeps its partition
            if partition is not None:
                where["partition"] = partition
            while True:
                try:
                    self.producer.produce(
                        out.topic,
                        value=out.value,
                        key=out.key,
                        headers=list(out.headers),
                        on_delivery=report(i),
                        **where,
                    )
                    self.producer.poll(0)
                    break
                except BufferError:
                    self.producer.poll(0.05)  # the local queue is full: let deliveries drain
                except KafkaException as exc:
                    refused[i] = exc.args[0]  # refused before it left, e.g. too large
                    break
