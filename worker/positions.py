"""Where to read from again: committed offsets after an abort, first held offsets after
a loss. Never a guess: "from the beginning" is days of log, "from here" is a loss."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from worker.errors import FatalKafkaError

log = structlog.get_logger("worker")


def seek_to_committed(consumer: Consumer, timeout_s: float) -> None:
    """Seek every assigned partition to its committed offset; fatal if it can't be read."""
    assigned = consumer.assignment()
    if not assigned:
        return
    for attempt in (1, 2):
        try:
            committed = consumer.committed(assigned, timeout=timeout_s)
        except KafkaException as exc:
            failed: str = str(exc.args[0])
        else:
            errors = [tp for tp in committed if tp.error is not None]
            if not errors:
                break
            failed = f"{names(errors)}: {errors[0].error}"
        log.warning("committed_lookup_failed", attempt=attempt, error=failed)
        if attempt == 2:
            raise FatalKafkaError(f"cannot read the committed offsets to rewind: {failed}")
    for tp in committed:
        # No committed offset at all (OFFSET_INVALID) is a new group: the earliest
        # record, as auto.offset.reset says.
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def first_offsets(positions: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Per partition, the lowest of the given (topic, partition, offset) positions."""
    first: dict[tuple[str, int], int] = defaultdict(lambda: 1 << 62)
    for topic, partition, offset in positions:
        first[(topic, partition)] = min(first[(topic, partition)], offset)
    return [(t, p, o) for (t, p), o in sorted(first.items())]


def names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
