"""The commit protocol against a fake producer: one test per row of the error table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker import codec
from worker.errors import FatalKafkaError
from worker.health import Health
from worker.kafka.commit import MAX_ABORTS_IN_ROW, Committer
from worker.kafka.transaction import Disposition, classify
from worker.metrics import Metrics
from worker.outgoing import HEADER_POINTER, HEADER_TRUNCATED, TRUNCATED_VALUE_BYTES, Outgoing
from worker.settings import WorkerSettings


def err(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "simulated", **flags))


class FakeProducer:
    """The transactional calls, logged. ``script[name]`` lists what each call raises."""

    def __init__(
        self,
        script: dict[str, list[KafkaException | None]] | None = None,
        refuse: Callable[[str, bytes | None], KafkaError | None] | None = None,
        refuse_now: Callable[[str, bytes | None], KafkaError | None] | None = None,
    ) -> None:
        self.script = script or {}
        self.refuse, self.refuse_now = refuse, refuse_now
        self.calls: list[str] = []
        self.pending: list[tuple[Callable[..., None], KafkaError]] = []
        self.open: list[tuple[str, bytes | None, list[Any]]] = []
        self.committed: list[tuple[str, bytes | None, list[Any]]] = []
        self.offsets: list[list[tuple[int, int]]] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        todo = self.script.get(name)
        if todo:
            exc = todo.pop(0)
            if exc is not None:
                raise exc

    def init_transactions(self, _t: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")
        self.open = []

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        *,
        headers: list[Any],
        on_delivery: Callable[..., None],
    ) -> None:
        now = self.refuse_now and self.refuse_now(topic, value)
        if now:
            raise KafkaException(now)
        later = self.refuse and self.refuse(topic, value)
        if later:
            self.pending.append((on_delivery, later))
        self.open.append((topic, value, headers))

    def poll(self, _t: float = 0) -> int:
        for callback, e in self.pending:
            callback(e, None)
        self.pending = []
        return 0

    def flush(self, _t: float = 0) -> int:
        self.poll()
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], _m: Any, _t: float
    ) -> None:
        self._call("send_offsets")
        self.offsets.append([(tp.partition, tp.offset) for tp in offsets])

    def commit_transaction(self, _t: float) -> None:
        if self.pending:  # a refused delivery makes the transaction abortable
            self.calls.append("commit")
            raise err(KafkaError._INCONSISTENT, txn_requires_abort=True)
        self._call("commit")
        self.committed += self.open

    def abort_transaction(self, _t: float) -> None:
        self._call("abort")
        self.open = []


class FakeConsumer:
    def __init__(self, owned: list[int] | None = None) -> None:
        self.owned = [0, 1] if owned is None else owned
        self.commits: list[list[tuple[int, int]]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", p) for p in self.owned]

    def consumer_group_metadata(self) -> object:
        return object()

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


Batch = list[tuple[codec.Record, Outgoing]]


def batch(
    n: int = 4,
    partition: Callable[[int], int] = lambda i: i % 2,
    value: Callable[[int], bytes] = lambda i: b"v",
) -> Batch:
    out = []
    for i in range(n):
        rec = codec.Record("in", partition(i), 10 + i, b"k", value(i), [("h", b"1")], None)
        out.append((rec, Outgoing("support.escalate", b"k", b'{"r": %d}' % i, [], "escalate")))
    return out


def committer(
    producer: FakeProducer, consumer: FakeConsumer | None = None, **settings: Any
) -> tuple[Committer, list[float]]:
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:  # a fake clock: the deadline test takes no time
        slept.append(seconds)
        now[0] += seconds

    c = Committer(
        WorkerSettings(commit_timeout_s=2, **settings),
        cast(Any, producer),
        cast(Any, consumer or FakeConsumer()),
        Metrics(),
        Health(stale_after_s=30),
        sleep=sleep,
        clock=lambda: now[0],
    )
    return c, slept


def test_the_table() -> None:
    assert classify(KafkaError(KafkaError._TIMED_OUT, retriable=True)) is Disposition.RETRY
    assert classify(KafkaError(KafkaError._TIMED_OUT, txn_requires_abort=True)) is Disposition.ABORT
    assert classify(KafkaError(KafkaError._FENCED, fatal=True)) is Disposition.FATAL
    assert classify(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)) is Disposition.FATAL
    assert classify(KafkaError(KafkaError._STATE)) is Disposition.ABORT


def test_a_batch_commits_its_outputs_and_next_offsets_together() -> None:
    p = FakeProducer()
    done = committer(p)[0].commit(batch())
    assert done is not None and done.kept == [0, 1, 2, 3]
    assert p.calls == ["begin", "send_offsets", "commit"]
    assert p.offsets == [[(0, 13), (1, 14)]] and len(p.committed) == 4


def test_retriable_commit_is_called_again_never_aborted() -> None:
    p = FakeProducer({"commit": [err(KafkaError._TIMED_OUT, retriable=True)] * 2})
    assert committer(p)[0].commit(batch()) is not None
    assert p.calls == ["begin", "send_offsets", "commit", "commit", "commit"]


def test_a_commit_still_retriable_at_the_deadline_is_fatal_outcome_unknown() -> None:
    p = FakeProducer({"commit": [err(KafkaError._TIMED_OUT, retriable=True)] * 10_000})
    c, slept = committer(p)
    with pytest.raises(FatalKafkaError, match="outcome unknown"):
        c.commit(batch())
    assert "abort" not in p.calls
    # a frozen broker is waited out for the transaction's own timeout, not only 2 s
    assert sum(slept) >= 60


def test_abortable_aborts_and_asks_for_a_rewind_with_backoff() -> None:
    generation = err(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)
    p = FakeProducer({"send_offsets": [generation]})
    c, slept = committer(p)
    assert c.commit(batch()) is None
    assert p.calls == ["begin", "send_offsets", "abort"] and not p.committed
    assert slept == [0.1]  # the backoff before the rewind


def test_aborts_in_a_row_are_bounded() -> None:
    p = FakeProducer({"commit": [err(KafkaError._STATE)] * 100})
    c, slept = committer(p)
    for _ in range(MAX_ABORTS_IN_ROW - 1):
        assert c.commit(batch()) is None
    with pytest.raises(FatalKafkaError, match="aborted transactions in a row"):
        c.commit(batch())
    assert slept == sorted(slept) and max(slept) <= 5.0


def test_fenced_is_one_error_that_names_the_setting() -> None:
    p = FakeProducer({"init": [err(KafkaError._FENCED, fatal=True)]})
    c, _ = committer(p, transactional_id="router-a")
    with pytest.raises(FatalKafkaError, match="SUPPORT_WORKER_TRANSACTIONAL_ID") as exc:
        c.init()
    assert "'router-a'" in str(exc.value)


def test_records_of_revoked_partitions_are_neither_produced_nor_committed() -> None:
    """Issue 9, defect 6: the broker would accept their offsets from any current member."""
    p = FakeProducer()
    done = committer(p, FakeConsumer(owned=[1]))[0].commit(batch())
    assert done is not None and done.kept == [1, 3]
    assert p.offsets == [[(1, 14)]] and [v for _, v, _ in p.committed] == [b'{"r": 1}', b'{"r": 3}']


def test_a_result_refused_at_produce_time_becomes_a_dead_letter() -> None:
    """Issue 9, defect 5: produce() raising MSG_SIZE_TOO_LARGE at once was never classified."""
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    p = FakeProducer(refuse_now=lambda t, v: too_large if v == b'{"r": 2}' else None)
    done = committer(p)[0].commit(batch())
    assert done is not None and done.outgoing[2].stage == "produce"
    assert p.calls == ["begin", "abort", "begin", "send_offsets", "commit"]
    assert [t for t, _, _ in p.committed].count("support.dlq") == 1


def test_a_dead_letter_the_dlq_refuses_steps_down_to_truncated_then_pointer() -> None:
    """Issue 9, defect 5: the original 5 MB bytes do not fit the DLQ either."""
    huge = b"x" * (5 * 1024 * 1024)

    def refuse(topic: str, value: bytes | None) -> KafkaError | None:
        if topic == "support.escalate" and value == b'{"r": 0}':
            return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
        if topic == "support.dlq" and value is not None and len(value) > 1000:
            return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
        return None

    p = FakeProducer(refuse=refuse)
    c, _ = committer(p)
    done = c.commit(batch(value=lambda i: huge))
    assert done is not None
    dead = done.outgoing[0]
    # result refused -> full dead letter refused -> truncated (64 KiB) refused -> pointer
    assert dead.rung == 2 and dead.value is None and dict(dead.headers)[HEADER_POINTER] == b"1"
    assert p.calls.count("abort") == 3 and p.calls[-1] == "commit"
    assert TRUNCATED_VALUE_BYTES > 1000  # so the truncated rung was refused too, as asserted
    assert dict(dead.headers)[HEADER_TRUNCATED] == str(len(huge)).encode()  # kept on the pointer


def test_a_pointer_refused_too_is_fatal_not_a_loop() -> None:
    p = FakeProducer(refuse=lambda t, v: KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    with pytest.raises(FatalKafkaError, match="even a pointer"):
        committer(p)[0].commit(batch(n=1))


@pytest.mark.parametrize(
    "code", [KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED]
)
def test_a_destination_we_cannot_write_is_fatal_naming_it(code: int) -> None:
    p = FakeProducer(refuse=lambda t, v: KafkaError(code) if t == "support.escalate" else None)
    with pytest.raises(FatalKafkaError, match=r"support\.escalate"):
        committer(p)[0].commit(batch())


def test_at_least_once_flushes_then_commits_offsets() -> None:
    p, consumer = FakeProducer(), FakeConsumer()
    c, _ = committer(p, consumer, mode="at_least_once")
    assert c.commit(batch()) is not None
    assert consumer.commits == [[(0, 13), (1, 14)]] and "begin" not in p.calls


def test_at_least_once_refused_record_becomes_a_dead_letter() -> None:
    p, consumer = (
        FakeProducer(
            refuse=lambda t, v: (
                KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if v == b'{"r": 1}' else None
            )
        ),
        FakeConsumer(),
    )
    done = committer(p, consumer, mode="at_least_once")[0].commit(batch())
    assert done is not None and done.outgoing[1].stage == "produce"
    assert consumer.commits == [[(0, 13), (1, 14)]]


def copies_of(b: Batch, topic: str = "support.review") -> Batch:
    return [(rec, Outgoing(topic, b"k", b"copy:" + (out.value or b""), [])) for rec, out in b]


def test_copies_commit_in_the_batch_transaction_after_its_results() -> None:
    p = FakeProducer()
    b = batch()
    done = committer(p)[0].commit(b, copies_of(b[:2]))
    assert done is not None and len(done.outgoing) == 4 and len(done.copies) == 2
    assert [t for t, _, _ in p.committed] == ["support.escalate"] * 4 + ["support.review"] * 2
    assert p.calls == ["begin", "send_offsets", "commit"]


def test_a_copy_of_a_revoked_partition_is_not_produced() -> None:
    p = FakeProducer()
    b = batch()
    done = committer(p, FakeConsumer(owned=[1]))[0].commit(b, copies_of(b))
    assert done is not None and [v for _, v, _ in p.committed][2:] == [
        b'copy:{"r": 1}',
        b'copy:{"r": 3}',
    ]


def test_a_refused_copy_is_dropped_and_its_message_still_routed() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    p = FakeProducer(refuse=lambda t, v: too_large if v == b'copy:{"r": 1}' else None)
    b = batch()
    done = committer(p)[0].commit(b, copies_of(b[:3]))
    assert done is not None
    assert [o.stage for o in done.outgoing] == [None] * 4  # no dead letter for a copy
    assert [v for t, v, _ in p.committed if t == "support.review"] == [
        b'copy:{"r": 0}',
        b'copy:{"r": 2}',
    ]
    assert [t for t, _, _ in p.committed].count("support.escalate") == 4
