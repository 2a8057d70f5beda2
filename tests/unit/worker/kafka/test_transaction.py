"""The one transactional producer: steps, retries and the produce loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker.kafka.transaction import AbortedError, StepFailedError, Transactions


@dataclass
class Rec:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int | None = None


class Producer:
    def __init__(self, full_for: int = 0, refuse: set[bytes] | None = None) -> None:
        self.full_for, self.refuse = full_for, refuse or set()
        self.calls: list[str] = []
        self.produced: list[tuple[str, bytes | None, int | None]] = []
        self.fail: dict[str, list[KafkaError]] = {}

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            raise KafkaException(self.fail[name].pop(0))

    def begin_transaction(self) -> None:
        self._step("begin")

    def produce(self, topic: str, *, value: bytes | None, key: bytes | None, **kw: Any) -> None:
        if self.full_for:
            self.full_for -= 1
            raise BufferError("queue full")
        if value in self.refuse:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.produced.append((topic, value, kw.get("partition")))

    def poll(self, _t: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(self, *_: Any) -> None:
        self._step("offsets")

    def commit_transaction(self, _t: float) -> None:
        self._step("commit")

    def abort_transaction(self, _t: float) -> None:
        self._step("abort")


def _txn(p: Producer) -> tuple[Transactions, list[float]]:
    now, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    def clock() -> float:
        now[0] += 1.0  # every look at the clock costs a second
        return now[0]

    return Transactions(p, 30, 60_000, sleep=sleep, clock=clock), slept  # type: ignore[arg-type]


OFFSETS = [TopicPartition("in", 0, 5)]


def test_a_transaction_produces_in_order_waits_on_a_full_queue_and_keeps_partitions() -> None:
    p = Producer(full_for=3)
    txn, _ = _txn(p)
    txn.run([Rec("a", b"k", b"1"), Rec("b", None, b"2", partition=4)], OFFSETS, "meta")
    assert p.produced == [("a", b"1", None), ("b", b"2", 4)]
    assert p.calls == ["begin", "offsets", "commit"]


def test_a_refused_record_aborts_and_is_named() -> None:
    p = Producer(refuse={b"big"})
    txn, _ = _txn(p)
    with pytest.raises(AbortedError) as caught:
        txn.run([Rec("a", None, b"1"), Rec("a", None, b"big")], OFFSETS, "meta")
    assert list(caught.value.refused) == [1]
    assert p.calls == ["begin", "abort"]


def test_a_retriable_step_is_called_again_then_commits() -> None:
    p = Producer()
    p.fail["commit"] = [KafkaError(KafkaError._TIMED_OUT, retriable=True)] * 3
    txn, slept = _txn(p)
    txn.run([], OFFSETS, "meta")
    assert p.calls == ["begin", "offsets", "commit", "commit", "commit", "commit"]
    assert slept == [0.1, 0.1, 0.1]


def test_a_step_still_failing_at_its_deadline_leaves_the_outcome_unknown() -> None:
    p = Producer()
    p.fail["begin"] = [KafkaError(KafkaError._TIMED_OUT, retriable=True)] * 100
    txn, _ = _txn(p)
    with pytest.raises(StepFailedError, match="outcome unknown"):
        txn.run([], OFFSETS, "meta")


def test_an_abortable_error_aborts_and_a_fatal_one_does_not() -> None:
    p = Producer()
    p.fail["offsets"] = [KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)]
    txn, _ = _txn(p)
    with pytest.raises(AbortedError):
        txn.run([], OFFSETS, "meta")
    assert p.calls[-1] == "abort"
    p = Producer()
    p.fail["commit"] = [KafkaError(KafkaError._FENCED, fatal=True)]
    txn, _ = _txn(p)
    with pytest.raises(StepFailedError, match="commit_transaction: _FENCED"):
        txn.run([], OFFSETS, "meta")
    assert "abort" not in p.calls


def test_an_abort_that_must_abort_is_fatal() -> None:
    p = Producer()
    p.fail["offsets"] = [KafkaError(KafkaError._STATE)]
    p.fail["abort"] = [KafkaError(KafkaError._STATE)]
    txn, _ = _txn(p)
    with pytest.raises(StepFailedError, match="abort_transaction"):
        txn.run([], OFFSETS, "meta")
