"""Where to read from again: committed offsets after an abort, first held offsets after
a loss. Never a guess: "from the beginning" is days of log, "from here" is a loss."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from worker.errors import FatalKafkaError

log = structlog.get_logger("worker")

# librdkafka marks some of these retriable, not all; each clears once the group's new
# coordinator has loaded its offsets, or once the transaction holding offsets ends.
COORDINATOR_MOVED = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.UNSTABLE_OFFSET_COMMIT,
    }
)
HELD_OPEN = frozenset({KafkaError._TIMED_OUT, KafkaError.UNSTABLE_OFFSET_COMMIT})
LOOKUP_BACKOFF_FIRST_S = 0.1
LOOKUP_BACKOFF_MAX_S = 2.0
# One committed() call waits at most this long, so the loop's heartbeat goes on while
# an open transaction of a previous owner keeps the offsets unstable for a minute.
LOOKUP_SLICE_S = 5.0


def seek_to_committed(
    consumer: Consumer,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    beat: Callable[[], None] = lambda: None,
) -> None:
    """Seek every assigned partition to its committed offset; fatal if it can't be read."""
    assigned = consumer.assignment()
    if not assigned:
        return
    for tp in stable_committed(consumer, assigned, timeout_s, clock, sleep, beat):
        # No committed offset at all (OFFSET_INVALID) is a new group: the earliest
        # record, as auto.offset.reset says.
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def assign_at_committed(
    consumer: Consumer,
    partitions: list[TopicPartition],
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    beat: Callable[[], None] = lambda: None,
) -> None:
    """Add newly assigned partitions at their stable committed offsets (from on_assign).

    librdkafka's own start is not safe under transactions: when the committed offset
    is unstable (a previous owner's transaction still holds offsets) and the assignment
    changes while it asks again, the partition goes back to its pending list with
    OFFSET_INVALID and starts at auto.offset.reset, from the beginning of the log
    (librdkafka 2.16.0 rdkafka_assignment.c, apply_offsets; reproduced in
    tests/integration/worker/test_assign_unstable.py). So the worker waits here for
    the stable offset itself and hands librdkafka absolute positions. A partition
    without any committed offset keeps OFFSET_INVALID: auto.offset.reset, as for a new
    group. The wait ends when the open transaction does: committed or aborted by its
    producer, fenced by its restart, or aborted by the coordinator at
    transaction.timeout.ms, which is why ``timeout_s`` must outlast that.
    """
    if not partitions:
        return
    consumer.incremental_assign(
        stable_committed(consumer, partitions, timeout_s, clock, sleep, beat)
    )


def stable_committed(
    consumer: Consumer,
    partitions: list[TopicPartition],
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    beat: Callable[[], None] = lambda: None,
) -> list[TopicPartition]:
    """The committed offsets of ``partitions`` once no transaction holds them open.

    A lookup that fails retriably is asked again, backing off, until ``timeout_s``:
    - the group coordinator moved (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS while
      its new broker loads the offsets; a timeout): on a cluster, a coordinator that
      restarts or thaws answers NOT_COORDINATOR for a moment, and failing at once
      there took every replica down together;
    - UNSTABLE_OFFSET_COMMIT, or librdkafka's own retries of it running past a slice:
      an open transaction holds offsets for the partition (read_committed asks for
      stable offsets, KIP-447).
    Anything else, or still failing then, is fatal.
    """
    deadline = clock() + timeout_s
    pause = LOOKUP_BACKOFF_FIRST_S
    for attempt in itertools.count(1):
        beat()
        try:
            committed = consumer.committed(
                partitions, timeout=max(0.1, min(LOOKUP_SLICE_S, deadline - clock()))
            )
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            failed, retriable, held = str(err), _retriable(err), _held_open(err)
        else:
            errors = [tp for tp in committed if tp.error is not None]
            if not errors:
                return list(committed)
            failed = f"{names(errors)}: {errors[0].error}"
            retriable = all(_retriable(tp.error) for tp in errors)
            held = all(_held_open(tp.error) for tp in errors)
        if held:  # the expected wait for a previous owner's transaction, not a fault
            waited = round(timeout_s - (deadline - clock()), 1)
            log.info("committed_offsets_unstable", attempt=attempt, waited_s=waited, error=failed)
        else:
            log.warning("committed_lookup_failed", attempt=attempt, error=failed)
        if not retriable or clock() + pause > deadline:
            raise FatalKafkaError(f"cannot read the committed offsets: {failed}")
        sleep(pause)
        pause = min(LOOKUP_BACKOFF_MAX_S, pause * 2)
    raise AssertionError("unreachable")


def _held_open(err: object) -> bool:
    """An open transaction holds the offsets: UNSTABLE_OFFSET_COMMIT, or librdkafka's own
    retries of it running past the slice (_TIMED_OUT)."""
    return isinstance(err, KafkaError) and err.code() in HELD_OPEN


def _retriable(err: object) -> bool:
    if not isinstance(err, KafkaError):
        return False
    return err.retriable() or err.code() in COORDINATOR_MOVED


def first_offsets(positions: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Per partition, the lowest of the given (topic, partition, offset) positions."""
    first: dict[tuple[str, int], int] = defaultdict(lambda: 1 << 62)
    for topic, partition, offset in positions:
        first[(topic, partition)] = min(first[(topic, partition)], offset)
    return [(t, p, o) for (t, p), o in sorted(first.items())]


def names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
