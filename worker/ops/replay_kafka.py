"""The Kafka side of ``support-worker dlq replay``: selected dead letters back to inbound, once.

The replay's progress is the DLQ position of a consumer group of its own (``--group``,
default ``support-router-dlq-replay``), and it moves only inside the transaction that
re-publishes what it passed:

  1. ``init_transactions()`` with transactional.id = the group (unless given): it aborts
     whatever a crashed or killed run left open, and fences a run still going.
  2. Snapshot each DLQ partition's end (high watermark, read_committed): where this run
     stops, however much is dead-lettered meanwhile. An offset filter can stop earlier.
  3. Start at the group's committed offsets (fetched after step 1; read_committed asks
     for stable ones), else at the earliest; read the DLQ with read_committed.
  4. Per chunk of at most ``--batch-size`` records read: ``begin_transaction()``, produce
     the replays of the selected letters, ``send_offsets_to_transaction()`` with the next
     offset of every partition passed (selected or not), ``commit_transaction()``.
  5. Stop when every partition reached its end, at ``--limit`` replays, or at
     ``--timeout-s`` (progress so far is committed; exit 1 says to run again).

So a letter is replayed in the transaction that moves the group past it, or not at all;
a second run starts after it. A dry run does steps 2-3 and lists, producing and
committing nothing. The transactions run on ``worker.kafka.transaction``, the worker's
own: retriable errors are retried until the commit timeout; anything else aborts the
open chunk and exits 1, with everything before it committed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from worker.errors import ConfigError, FatalKafkaError, KafkaUnavailableError
from worker.kafka.clients import ClientErrors, consumer_options, producer_options, to_record
from worker.kafka.transaction import (
    AbortedError,
    Disposition,
    StepFailedError,
    Transactions,
    classify,
)
from worker.ops.replay import Replay, Selection, decide, describe, to_replay
from worker.settings import WorkerSettings

DEFAULT_GROUP = "support-router-dlq-replay"
POLL_S = 0.5


@dataclass(frozen=True)
class ReplayOptions:
    selection: Selection
    group: str = DEFAULT_GROUP
    transactional_id: str = ""  # default: the group
    dry_run: bool = False
    batch_size: int = 500
    limit: int | None = None  # stop after this many replays
    timeout_s: float = 300.0


@dataclass
class Outcome:
    replayed: int = 0  # or, in a dry run, would be
    unreplayable: int = 0
    not_selected: int = 0
    transactions: int = 0
    start: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    position: dict[int, int] = field(default_factory=dict)
    limit_reached: bool = False

    @property
    def complete(self) -> bool:
        """Every partition read to its end (or the limit stopped it on purpose)."""
        return self.limit_reached or all(self.position[p] >= e for p, e in self.end.items())


def replay(settings: WorkerSettings, opts: ReplayOptions, out: Callable[[str], None]) -> Outcome:
    """Run one replay (see the module docstring); ``out`` gets the listing and summary."""
    txn_id = opts.transactional_id or opts.group
    if opts.group == settings.group_id or txn_id == settings.transactional_id:
        raise ConfigError(
            f"the replay needs a group and transactional.id of its own, not the worker's "
            f"({settings.group_id!r}, {settings.transactional_id!r})"
        )
    dlq, inbound = settings.topics.dlq, settings.topics.inbound
    producer = None if opts.dry_run else Producer(_producer_config(settings, txn_id))
    txn = None if producer is None else _transactions(producer, settings)
    consumer = Consumer(_consumer_config(settings, opts.group))
    try:
        # First, so that a wrong address fails within admin_timeout_s, naming it.
        inbound_partitions = len(_partitions(consumer, settings, inbound))
        if producer is not None and txn is not None:  # step 1
            with _fatal_on_failure():
                txn.step("init_transactions", producer.init_transactions, abort_is_fatal=True)
        outcome = Outcome()
        _snapshot(consumer, settings, dlq, opts.selection, outcome)
        todo = [p for p in outcome.end if outcome.start[p] < outcome.end[p]]
        if todo:
            consumer.assign([TopicPartition(dlq, p, outcome.start[p]) for p in todo])
            _read(consumer, txn, settings, opts, inbound, inbound_partitions, outcome, out)
        _summary(opts, dlq, inbound, outcome, out)
        return outcome
    finally:
        consumer.close()  # never commits: enable.auto.commit is off
        if producer is not None:
            producer.flush(1)


def _consumer_config(settings: WorkerSettings, group: str) -> dict[str, Any]:
    return consumer_options(
        settings.kafka,
        group,
        ClientErrors(settings.kafka),  # a refused login: one fatal error
        log_level=0,  # a broker away is one error at the end, not a reconnect per 50 ms
        **{"enable.partition.eof": True},  # how a partition's end shows
    )


def _producer_config(settings: WorkerSettings, transactional_id: str) -> dict[str, Any]:
    return producer_options(
        settings.kafka,
        ClientErrors(settings.kafka),
        transactional_id,
        settings.transaction_timeout_ms,
        log_level=0,
    )


def _transactions(producer: Producer, settings: WorkerSettings) -> Transactions:
    return Transactions(producer, settings.commit_timeout_s, settings.transaction_timeout_ms)


def _read(
    consumer: Consumer,
    txn: Transactions | None,
    settings: WorkerSettings,
    opts: ReplayOptions,
    inbound: str,
    inbound_partitions: int,
    o: Outcome,
    out: Callable[[str], None],
) -> None:
    pos, end = o.position, o.end
    committed = dict(pos)
    deadline = time.monotonic() + opts.timeout_s
    while not all(pos[p] >= end[p] for p in end) and time.monotonic() < deadline:
        chunk: list[Replay] = []
        lines: list[str] = []
        for msg in consumer.consume(opts.batch_size, timeout=POLL_S):
            p, err = msg.partition(), msg.error()
            if p is None or p not in end or pos[p] >= end[p]:
                continue
            if err is not None:
                _consumer_error(err, msg.offset(), p, pos, end)
                continue
            offset = msg.offset() or 0
            if offset >= end[p]:  # dead-lettered after the snapshot: the next run's
                pos[p] = end[p]
                continue
            d = decide(to_record(msg), opts.selection)
            pos[p] = offset + 1
            if d.verdict == "not_selected":
                o.not_selected += 1
                continue
            if d.verdict == "unreplayable":
                o.unreplayable += 1
                lines.append(f"unreplayable {describe(d)}")
                continue
            o.replayed += 1
            chunk.append(to_replay(d.letter, inbound, inbound_partitions))
            lines.append(f"{'would replay' if opts.dry_run else 'replayed'} {describe(d)}")
            if opts.limit is not None and o.replayed >= opts.limit:
                o.limit_reached = True
                break
        moved = [TopicPartition(settings.topics.dlq, p, n) for p, n in pos.items()]
        if txn is not None and (chunk or pos != committed):
            _transaction(txn, consumer, chunk, moved)
            o.transactions += 1
            committed = dict(pos)
        for line in lines:  # after the commit: what is listed as replayed was
            out(line)
        if o.limit_reached:
            return


def _consumer_error(
    err: KafkaError, offset: int | None, p: int, pos: dict[int, int], end: dict[int, int]
) -> None:
    if err.code() == KafkaError._PARTITION_EOF:
        # The end as read_committed sees it: past trailing commit markers and aborted records.
        pos[p] = max(pos[p], min(offset or 0, end[p]))
        return
    if err.fatal() or classify(err) is Disposition.FATAL:
        raise FatalKafkaError(f"dlq replay: reading the DLQ: {err.name()}: {err.str()}")
    # Anything else (a broker briefly away) librdkafka retries itself; the timeout bounds it.


def _transaction(
    txn: Transactions, consumer: Consumer, replays: list[Replay], offsets: list[TopicPartition]
) -> None:
    """Step 4: the replays and the DLQ offsets passed, one transaction."""
    with _fatal_on_failure():
        try:
            txn.run(replays, offsets, consumer.consumer_group_metadata())
        except AbortedError as aborted:
            step = "produce" if aborted.refused else "transaction"
            raise StepFailedError(step, aborted.err) from None


@contextlib.contextmanager
def _fatal_on_failure() -> Iterator[None]:
    try:
        yield
    except StepFailedError as failed:
        # Fenced or gone: the coordinator aborts what is open (its timeout, or the next
        # run's step 1).
        raise FatalKafkaError(
            f"dlq replay: {failed}; the open chunk was not replayed and its offsets not "
            "committed: run again to resume"
        ) from None


def _partitions(consumer: Consumer, settings: WorkerSettings, topic: str) -> list[int]:
    kafka = settings.kafka
    try:
        md = consumer.list_topics(topic, timeout=kafka.admin_timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} within "
            f"{kafka.admin_timeout_s:.0f}s: {exc.args[0] if exc.args else exc}"
        ) from None
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise ConfigError(f"topic {topic!r}: {t.error.str() if t and t.error else 'not found'}")
    return sorted(t.partitions)


def _snapshot(
    consumer: Consumer, settings: WorkerSettings, dlq: str, selection: Selection, o: Outcome
) -> None:
    """Steps 2 and 3: per partition, where this run starts and where it stops."""
    timeout = settings.kafka.admin_timeout_s
    tps = [
        TopicPartition(dlq, p) for p in selection.partitions(_partitions(consumer, settings, dlq))
    ]
    try:
        committed = consumer.committed(tps, timeout=timeout)
        watermarks = [consumer.get_watermark_offsets(tp, timeout=timeout) for tp in committed]
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"dlq replay: the DLQ's offsets at {settings.kafka.bootstrap_servers}: "
            f"{exc.args[0] if exc.args else exc}"
        ) from None
    for tp, (low, high) in zip(committed, watermarks, strict=True):
        o.end[tp.partition] = selection.end(tp.partition, high)
        # No committed offset (negative): the earliest; one below the earliest: retention
        # deleted letters this group never passed, and they are gone.
        o.start[tp.partition] = max(low, tp.offset)
        o.position[tp.partition] = o.start[tp.partition]


def _summary(
    opts: ReplayOptions, dlq: str, inbound: str, o: Outcome, out: Callable[[str], None]
) -> None:
    read = o.replayed + o.unreplayable + o.not_selected
    verb = "would replay" if opts.dry_run else "replayed"
    out(
        f"{verb} {o.replayed} of {read} dead letters read from {dlq} to {inbound} "
        f"(unreplayable {o.unreplayable}, not selected {o.not_selected}); "
        f"{o.transactions} transaction(s); group {opts.group}"
    )
    spans = ", ".join(f"{p}: {o.start[p]}..{o.position[p]} of {o.end[p]}" for p in sorted(o.end))
    out(f"partitions {spans or '(none)'}")
    if opts.dry_run:
        out("dry run: nothing produced, no offset committed")
    elif o.not_selected:
        out(
            f"the {o.not_selected} letter(s) not selected were passed: group {opts.group} will "
            "not offer them again; replay them with another --group"
        )
    if o.limit_reached:
        out(f"stopped at --limit {opts.limit}; run again to go on")
    elif not o.complete:
        out(f"stopped by --timeout-s {opts.timeout_s:g} before the end; run again to go on")
