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
# coordinator has loaded its offsets.
COORDINATOR_MOVED = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
LOOKUP_BACKOFF_FIRST_S = 0.1
LOOKUP_BACKOFF_MAX_S = 2.0


def seek_to_committed(
    consumer: Consumer,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Seek every assigned partition to its committed offset; fatal if it can't be read.

    A lookup that fails retriably (the group coordinator moved: NOT_COORDINATOR, or
    COORDINATOR_LOAD_IN_PROGRESS while its new broker loads the offsets; a timeout) is
    asked again, backing off, until ``timeout_s``: on a cluster, a coordinator that
    restarts or thaws answers NOT_COORDINATOR for a moment, and failing at once there
    took every replica down together. Anything else, or still failing then, is fatal.
    """
    assigned = consumer.assignment()
    if not assigned:
        return
    deadline = clock() + timeout_s
    pause = LOOKUP_BACKOFF_FIRST_S
    for attempt in itertools.count(1):
        try:
            committed = consumer.committed(assigned, timeout=max(0.1, deadline - clock()))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            failed, retriable = str(err), _retriable(err)
        else:
            errors = [tp for tp in committed if tp.error is not None]
            if not errors:
                break
            failed = f"{names(errors)}: {errors[0].error}"
            retriable = all(_retriable(tp.error) for tp in errors)
        log.warning("committed_lookup_failed", attempt=attempt, error=failed)
        if not retriable or clock() + pause > deadline:
            raise FatalKafkaError(f"cannot read the committed offsets to rewind: {failed}")
        sleep(pause)
        pause = min(LOOKUP_BACKOFF_MAX_S, pause * 2)
    for tp in committed:
        # No committed offset at all (OFFSET_INVALID) is a new group: the earliest
        # record, as auto.offset.reset says.
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


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
