"""The commit protocol: a batch's outputs and its input offsets move together, or not at all.

Exactly-once (``mode = exactly_once``), once per batch, in ``Committer.commit``:

  1. Ownership. Keep only the records of partitions this member owns now. A partition
     revoked or lost while its batch was in the model already belongs to another
     member, which reads it again from the committed offset: producing its results here
     would double them, and committing its offset could move the new owner's backwards
     (the broker accepts TxnOffsetCommit from any member of the current generation,
     whichever partitions it owns).
  2. ``begin_transaction()``.
  3. Produce every result and dead letter of the batch. A record the client refuses at
     once (``produce()`` raising, e.g. MSG_SIZE_TOO_LARGE) counts like a refused delivery.
  4. ``send_offsets_to_transaction()``: last offset + 1 per partition, with the
     consumer's group metadata, so a member of an older generation is refused.
  5. ``commit_transaction()``.

Every Kafka error of steps 2-5 goes through one table, ``classify``:

  - retriable: call the same step again, until ``commit_timeout_s`` has passed (plus
    ``transaction_timeout_ms`` for steps 4 and 5, so a broker frozen for a while costs
    a wait, not a restart). A ``commit_transaction`` that timed out must be called
    again, never aborted (that answers _CONFLICT); a step still failing at the deadline
    leaves the outcome unknown, which is fatal: a fresh producer (same transactional.id)
    or the coordinator's transaction timeout settles it. A call that never returns at
    all (librdkafka ignoring its timeout) is ended by ``worker.kafka.watchdog``.
  - abortable: ``abort_transaction()``. Records the broker refused on their own merits
    are replaced (a result by a dead letter, a dead letter by a smaller one; see
    ``worker.outgoing``) and the batch is committed again at once. Otherwise the caller
    rewinds and reads the batch again, after a backoff; ``MAX_ABORTS_IN_ROW`` aborts in a
    row without a commit are fatal, so nothing retries forever.
  - fatal: ``FatalKafkaError``. The process logs one line, leaves the group and exits 1,
    and a healthy replica takes the partitions.

At-least-once: steps 2 and 5 become "flush until every record is delivered" and step 4
a synchronous offset commit; a crash in between repeats a batch, never loses one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from worker import codec
from worker.errors import FatalKafkaError
from worker.health import Health
from worker.kafka.watchdog import Watchdog
from worker.metrics import Metrics
from worker.outgoing import Outgoing, refused_result
from worker.settings import WorkerSettings

log = structlog.get_logger("worker")
T = TypeVar("T")

MAX_ABORTS_IN_ROW = 10
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0
# One blocking call at most this long, so the loop's heartbeat (/healthz) stays fresh
# through a long broker failover; the step is called again until commit_timeout_s.
STEP_SLICE_S = 5.0
RETRY_PAUSE_S = 0.1
IN_TRANSACTION = frozenset({"send_offsets_to_transaction", "commit_transaction"})


class Disposition(Enum):
    RETRY = "retry"  # the same call again
    ABORT = "abort"  # abort the transaction; read the batch again
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
    """The one table: what to do about a Kafka error from any step of the protocol."""
    if err.fatal() or err.code() in FATAL_ERRORS:
        return Disposition.FATAL
    if err.txn_requires_abort():
        return Disposition.ABORT
    if err.retriable():
        return Disposition.RETRY
    # Unknown and not flagged (e.g. _STATE after a failed step): abort and read again;
    # MAX_ABORTS_IN_ROW bounds it.
    return Disposition.ABORT


@dataclass(frozen=True)
class Committed:
    """What one commit wrote: the batch positions it kept, and what it produced for each."""

    kept: list[int]  # indices into the batch; the rest belonged to revoked partitions
    outgoing: list[Outgoing]  # aligned with kept; refused records already replaced
    copies: list[Outgoing] = field(default_factory=list)  # the copies produced with them


class AbortedError(Exception):
    """Internal: the transaction was aborted; ``refused`` names records to replace."""

    def __init__(self, err: KafkaError, refused: dict[int, KafkaError]) -> None:
        super().__init__(err.str())
        self.err, self.refused = err, refused


class Committer:
    def __init__(
        self,
        settings: WorkerSettings,
        producer: Producer,
        consumer: Consumer,
        metrics: Metrics,
        health: Health,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.s = settings
        self.producer = producer
        self.consumer = consumer
        self.metrics = metrics
        self.health = health
        self.sleep = sleep
        self.clock = clock
        self.watchdog = watchdog or Watchdog()
        self.eos = settings.mode == "exactly_once"
        self.aborts_in_row = 0
        self.commit_s = 0.0  # moving average of one commit's duration

    def init(self) -> None:
        """``init_transactions()``: also aborts what a previous owner of our id left open."""
        if self.eos:
            self._step("init_transactions", self.producer.init_transactions, fatal_on_abort=True)

    def commit(
        self,
        batch: Sequence[tuple[codec.Record, Outgoing]],
        copies: Sequence[tuple[codec.Record, Outgoing]] = (),
    ) -> Committed | None:
        """Commit one batch; None when it was aborted and must be read again (rewind).

        ``copies`` are extra records of the batch's own records (the review queue's), in
        the same transaction; one the broker refuses on its own merits is dropped, never
        turned into a dead letter: its message was routed.
        """
        # Step 1
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        kept = [i for i, (r, _) in enumerate(batch) if (r.topic, r.partition) in owned]
        if len(kept) < len(batch):
            log.warning(
                "not_owned_dropped",
                records=len(batch) - len(kept),
                note="their partitions were revoked; the new owner reads them",
            )
        if not kept:
            return Committed([], [])
        records = [batch[i][0] for i in kept]
        offsets = next_offsets(records)
        extra = [(r, o) for r, o in copies if (r.topic, r.partition) in owned]
        records += [r for r, _ in extra]
        outgoing = [batch[i][1] for i in kept] + [o for _, o in extra]
        while True:  # each pass commits, replaces a refused record (a finite ladder), or returns
            started = self.clock()
            try:
                self._transaction(outgoing, offsets)
            except AbortedError as aborted:
                self.metrics.aborts.inc()
                log.warning(
                    "transaction_aborted",
                    error=aborted.err.str(),
                    batch=len(kept),
                    refused=len(aborted.refused),
                )
                if not self._replace_refused(records, outgoing, aborted, len(kept)):
                    self._backoff(aborted.err)
                    return None
                continue
            self.aborts_in_row = 0
            self.commit_s += 0.2 * (self.clock() - started - self.commit_s)
            return Committed(kept, outgoing[: len(kept)], outgoing[len(kept) :])

    # -- the steps -------------------------------------------------------------

    def _transaction(self, outgoing: list[Outgoing], offsets: list[TopicPartition]) -> None:
        refused: dict[int, KafkaError] = {}
        if not self.eos:
            self._produce_all(outgoing, refused)
            left = self.producer.flush(self.s.commit_timeout_s)
            if refused or left:
                raise AbortedError(
                    next(iter(refused.values()), KafkaError(KafkaError._TIMED_OUT)), refused
                )
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                err = exc.args[0]
                if classify(err) is Disposition.FATAL:
                    raise self._fatal("commit", err) from None
                raise AbortedError(err, {}) from None
            return
        # Step 2
        self._step("begin_transaction", lambda _timeout: self.producer.begin_transaction())
        try:
            # Step 3
            self._produce_all(outgoing, refused)
            if refused:
                raise KafkaException(next(iter(refused.values())))
            # Step 4
            metadata = self.consumer.consumer_group_metadata()
            self._step(
                "send_offsets_to_transaction",
                lambda t: self.producer.send_offsets_to_transaction(offsets, metadata, t),
            )
            # Step 5
            self._step("commit_transaction", self.producer.commit_transaction)
        except KafkaException as exc:
            err = exc.args[0]
            # A refused record is judged per record after the abort (_replace_refused).
            if not refused and classify(err) is Disposition.FATAL:
                raise self._fatal("produce", err) from None
            self._abort()
            raise AbortedError(err, refused) from None
        except AbortedError as aborted:
            self._abort()
            raise AbortedError(aborted.err, refused) from None

    def _step(self, name: str, call: Callable[[float], Any], fatal_on_abort: bool = False) -> None:
        """One protocol call, retried while its error is retriable and time is left.

        Time left: ``commit_timeout_s``; for the two calls inside an open transaction,
        also its ``transaction_timeout_ms``. A broker frozen for longer than the commit
        timeout then costs a wait, not a restart: once the transaction timeout has
        passed, the coordinator has aborted the transaction unless it committed, and a
        call still failing then leaves that outcome unknown, which is fatal.
        """
        budget = self.s.commit_timeout_s
        if name in IN_TRANSACTION:
            budget += self.s.transaction_timeout_ms / 1000
        deadline = self.clock() + budget
        while True:
            self.health.beat()
            timeout = max(0.1, min(STEP_SLICE_S, deadline - self.clock()))
            try:
                with self.watchdog.guard(name, timeout):
                    call(timeout)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                kind = classify(err)
                if kind is Disposition.FATAL or (kind is Disposition.ABORT and fatal_on_abort):
                    raise self._fatal(name, err) from None
                if kind is Disposition.ABORT:
                    raise AbortedError(err, {}) from None
                if self.clock() >= deadline:
                    raise self._fatal(
                        name, err, f"still failing after {budget:.0f}s, outcome unknown"
                    ) from None
                log.warning("kafka_step_retry", step=name, error=err.str())
                self.sleep(RETRY_PAUSE_S)  # an error that returns at once must not spin

    def _abort(self) -> None:
        # Serve delivery reports before and after: they name the refused records (the
        # purge that abort causes adds _PURGE_QUEUE reports, which name nobody).
        self.producer.poll(0)
        try:
            self._step("abort_transaction", self.producer.abort_transaction, fatal_on_abort=True)
        except AbortedError as aborted:  # pragma: no cover - fatal_on_abort turns it fatal
            raise self._fatal("abort_transaction", aborted.err) from None
        self.producer.poll(0)

    def _produce_all(self, outgoing: list[Outgoing], refused: dict[int, KafkaError]) -> None:
        def report(i: int) -> Callable[[KafkaError | None, Any], None]:
            def on_delivery(err: KafkaError | None, _msg: Any) -> None:
                if err is not None:
                    refused[i] = err

            return on_delivery

        for i, out in enumerate(outgoing):
            while True:
                try:
                    self.producer.produce(
                        out.topic,
                        out.value,
                        out.key,
                        headers=list(out.headers),
                        on_delivery=report(i),
                    )
                    self.producer.poll(0)
                    break
                except BufferError:
                    self.producer.poll(0.05)  # the local queue is full: let deliveries drain
                except KafkaException as exc:
                    refused[i] = exc.args[0]  # refused before it left, e.g. too large
                    break

    # -- after an abort ------------------------------------------------------------

    def _replace_refused(
        self,
        records: list[codec.Record],
        outgoing: list[Outgoing],
        aborted: AbortedError,
        results: int,
    ) -> bool:
        """Replace records refused on their own merits; True when the batch can go again.

        The first ``results`` records are the batch's own; a refused one after them is a
        copy, and is dropped. A delivery error about the destination (a deleted topic, no
        permission) is fatal: every retry would fail the same way.
        """
        for i, err in aborted.refused.items():
            if err.code() in FATAL_ERRORS:
                raise self._fatal(f"produce to {outgoing[i].topic}", err)
        culprits = {i: e for i, e in aborted.refused.items() if e.code() in RECORD_ERRORS}
        if not culprits:
            return False
        for i, err in sorted(culprits.items(), reverse=True):  # copies last: delete from the end
            if i >= results:
                log.warning(
                    "copy_refused",
                    topic=outgoing[i].topic,
                    error=err.name(),
                    offset=records[i].offset,
                    replaced_by="nothing: the message itself was routed",
                )
                del outgoing[i], records[i]
                continue
            reason = f"the broker refused the record: {err.str()}"
            smaller = refused_result(outgoing[i], records[i], err.name(), reason, self.s.topics.dlq)
            if smaller is None:
                raise self._fatal(
                    f"produce to {outgoing[i].topic}", err, "even a pointer dead letter was refused"
                )
            log.warning(
                "record_refused",
                topic=outgoing[i].topic,
                error=err.name(),
                offset=records[i].offset,
                replaced_by=f"dead letter ({smaller.stage})",
                rung=smaller.rung,
            )
            outgoing[i] = smaller
        return True

    def _backoff(self, err: KafkaError) -> None:
        self.aborts_in_row += 1
        if self.aborts_in_row >= MAX_ABORTS_IN_ROW:
            raise self._fatal("commit", err, f"{self.aborts_in_row} aborted transactions in a row")
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.aborts_in_row - 1))
        self.health.beat()
        self.sleep(delay)

    def _fatal(self, step: str, err: KafkaError, detail: str = "") -> FatalKafkaError:
        text = f"{step}: {err.name()}: {err.str()}" + (f" ({detail})" if detail else "")
        if err.code() in FENCED:
            text += (
                f". Another producer uses transactional.id {self.s.transactional_id!r}: every "
                "replica needs its own (SUPPORT_WORKER_TRANSACTIONAL_ID; docs/reliability.md)"
            )
        return FatalKafkaError(text)


def next_offsets(records: Iterable[codec.Record]) -> list[TopicPartition]:
    """Per partition, the offset to commit: the last one processed + 1."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        last[key] = max(last.get(key, -1), r.offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
