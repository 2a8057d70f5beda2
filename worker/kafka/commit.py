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

Steps 2-5 run on ``worker.kafka.transaction`` (shared with DLQ replay and the feedback
collector), and every Kafka error goes through its one table, ``classify``:

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

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from worker import codec
from worker.errors import FatalKafkaError
from worker.health import Health
from worker.kafka.transaction import (
    FATAL_ERRORS,
    FENCED,
    RECORD_ERRORS,
    AbortedError,
    Disposition,
    StepFailedError,
    Transactions,
    classify,
)
from worker.kafka.watchdog import Watchdog
from worker.metrics import Metrics
from worker.outgoing import Outgoing, refused_result
from worker.settings import WorkerSettings

log = structlog.get_logger("worker")

MAX_ABORTS_IN_ROW = 10
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0


@dataclass(frozen=True)
class Committed:
    """What one commit wrote: the batch positions it kept, and what it produced for each."""

    kept: list[int]  # indices into the batch; the rest belonged to revoked partitions
    outgoing: list[Outgoing]  # aligned with kept; refused records already replaced
    copies: list[Outgoing] = field(default_factory=list)  # the copies produced with them


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
        self.txn = Transactions(
            producer,
            settings.commit_timeout_s,
            settings.transaction_timeout_ms,
            beat=health.beat,
            watchdog=watchdog or Watchdog(),
            sleep=sleep,
            clock=clock,
        )
        self.eos = settings.mode == "exactly_once"
        self.aborts_in_row = 0
        self.commit_s = 0.0  # moving average of one commit's duration

    def init(self) -> None:
        """``init_transactions()``: also aborts what a previous owner of our id left open."""
        if self.eos:
            with self._fatal_on_failure():
                self.txn.step("init_transactions", self.producer.init_transactions, True)

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
                with self._fatal_on_failure():
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
        if self.eos:  # steps 2-5
            self.txn.run(outgoing, offsets, self.consumer.consumer_group_metadata())
            return
        refused: dict[int, KafkaError] = {}
        self.txn.produce_all(outgoing, refused)
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
            raise AbortedError(err) from None

    @contextlib.contextmanager
    def _fatal_on_failure(self) -> Iterator[None]:
        try:
            yield
        except StepFailedError as failed:
            raise self._fatal(failed.step, failed.err, failed.detail) from None

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
