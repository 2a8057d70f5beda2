"""Where to read from again: the committed-offset lookup of a rewind, through a
coordinator that moves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from structlog.testing import capture_logs

from worker.errors import FatalKafkaError
from worker.kafka.positions import assign_at_committed, first_offsets, seek_to_committed


@pytest.fixture(autouse=True)
def _info_level() -> Iterator[None]:
    """Info lines reach capture_logs whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


class Lookups:
    """A consumer whose committed() fails with ``errors`` in turn, then answers offset 7."""

    def __init__(self, *errors: int, per_partition: bool = False) -> None:
        self.errors, self.per_partition = list(errors), per_partition
        self.seeks: list[tuple[int, int]] = []
        self.calls = 0

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", 0), TopicPartition("in", 1)]

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[Any]:
        self.calls += 1
        if self.errors:
            err = KafkaError(self.errors.pop(0))
            if not self.per_partition:
                raise KafkaException(err)
            # what librdkafka returns for a partition whose lookup failed
            return [
                SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=-1001, error=err)
                for tp in parts
            ]
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in parts]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))


def _run(consumer: Lookups, timeout_s: float = 30) -> list[float]:
    now, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    seek_to_committed(consumer, timeout_s, clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
    return slept


@pytest.mark.parametrize("per_partition", [False, True])
def test_a_coordinator_that_moved_is_asked_again_until_it_answers(per_partition: bool) -> None:
    moved = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
    consumer = Lookups(*moved, per_partition=per_partition)
    with capture_logs() as logs:
        assert _run(consumer) == [0.1, 0.2]
    assert consumer.seeks == [(0, 7), (1, 7)]
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("committed_lookup_failed", "warning")
    ] * 2


def test_an_error_no_retry_can_fix_is_fatal_at_once() -> None:
    consumer = Lookups(KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(FatalKafkaError, match="committed offsets"):
        _run(consumer)
    assert consumer.calls == 1 and consumer.seeks == []


def test_a_coordinator_that_never_answers_is_fatal_once_the_time_is_up() -> None:
    consumer = Lookups(*[KafkaError.NOT_COORDINATOR] * 100)
    with pytest.raises(FatalKafkaError, match="committed offsets"):
        _run(consumer, timeout_s=10)
    assert 4 <= consumer.calls <= 12 and consumer.seeks == []


def test_first_offsets_are_the_lowest_per_partition() -> None:
    rows = [("a", 0, 5), ("a", 0, 3), ("a", 1, 9), ("b", 0, 1)]
    assert first_offsets(rows) == [("a", 0, 3), ("a", 1, 9), ("b", 0, 1)]


class Assigns(Lookups):
    def __init__(self, *errors: int, per_partition: bool = False) -> None:
        super().__init__(*errors, per_partition=per_partition)
        self.assigned: list[tuple[int, int]] = []

    def incremental_assign(self, parts: list[TopicPartition]) -> None:
        self.assigned += [(tp.partition, tp.offset) for tp in parts]


def _assign(consumer: Assigns, timeout_s: float = 90) -> tuple[list[float], int]:
    now, slept, beats = [0.0], [], [0]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    def beat() -> None:
        beats[0] += 1

    parts = [TopicPartition("in", 0), TopicPartition("in", 1)]
    assign_at_committed(consumer, parts, timeout_s, lambda: now[0], sleep, beat)  # type: ignore[arg-type]
    return slept, beats[0]


@pytest.mark.parametrize("per_partition", [False, True])
def test_an_assignment_waits_for_offsets_an_open_transaction_holds(per_partition: bool) -> None:
    # librdkafka answers UNSTABLE_OFFSET_COMMIT per partition, or times the call out
    # while it retries that itself
    code = KafkaError.UNSTABLE_OFFSET_COMMIT if per_partition else KafkaError._TIMED_OUT
    consumer = Assigns(code, code, code, per_partition=per_partition)
    with capture_logs() as logs:
        slept, beats = _assign(consumer)
    assert slept == [0.1, 0.2, 0.4] and beats == 4  # the loop's heartbeat goes on
    # the expected wait for the previous owner, not a warning that pages someone
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("committed_offsets_unstable", "info")
    ] * 3
    assert [e["waited_s"] for e in logs] == [0.0, 0.1, 0.3]
    assert consumer.assigned == [(0, 7), (1, 7)]  # absolute positions, never a reset


def test_an_assignment_whose_offsets_stay_unstable_past_the_wait_is_fatal() -> None:
    consumer = Assigns(*[KafkaError.UNSTABLE_OFFSET_COMMIT] * 200, per_partition=True)
    with pytest.raises(FatalKafkaError, match="UNSTABLE"):
        _assign(consumer, timeout_s=20)
    assert consumer.assigned == []


def test_an_empty_assignment_asks_nothing() -> None:
    consumer = Assigns()
    assign_at_committed(consumer, [], 10)  # type: ignore[arg-type]
    assert consumer.calls == 0 and consumer.assigned == []
