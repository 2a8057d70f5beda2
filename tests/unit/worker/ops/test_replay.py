"""``support-worker dlq replay`` without a broker: the selection, the record it re-publishes,
and the read-produce-commit loop against in-memory clients (the broker test is
tests/integration/worker/test_dlq_replay.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import messages
from schemas.messages import HEADER_REPLAY_OF
from worker import codec
from worker.cli import main
from worker.errors import ExitCode, FatalKafkaError
from worker.ops import replay_kafka
from worker.ops.replay import (
    OffsetRange,
    Selection,
    decide,
    describe,
    parse_offsets,
    parse_time,
    read_dead_letter,
    to_replay,
)
from worker.ops.replay_kafka import ReplayOptions, replay
from worker.outgoing import dead_letter, step_down
from worker.settings import TopicNames, WorkerSettings

TS = 1_780_000_000_000  # 2026-05-28T20:26:40Z
TOPICS = TopicNames(inbound="in", dlq="dlq")
HEADER_NAMES = [
    *(getattr(messages, n) for n in dir(messages) if n.startswith("HEADER_")),
    "x-dead-letter-pointer",
    "x-dead-letter-truncated",
    "traceparent",
]


def letter(
    offset: int,
    stage: Any = "infer",
    error_type: str = "InjectedModelError",
    *,
    partition: int = 0,
    value: bytes | None = None,
    headers: codec.Headers | None = None,
    ts: int | None = TS,
    source_partition: int = 1,
) -> codec.Record:
    """A DLQ record as the worker writes it (outgoing.dead_letter), read back."""
    mid = f"m{offset}"
    original = codec.Record(
        "in",
        source_partition,
        100 + offset,
        b"conv-1",
        orjson.dumps({"message_id": mid, "text": "hi"}) if value is None else value,
        [("traceparent", b"00-1-01"), ("null", None)] if headers is None else headers,
        TS - 5,
    )
    out = dead_letter(codec.Rejected(original, stage, error_type, "boom"), "dlq")
    return codec.Record("dlq", partition, offset, out.key, out.value, out.headers, ts)


# -- parsing ---------------------------------------------------------------------------------


def test_offset_ranges_parse_inclusive_and_open() -> None:
    assert parse_offsets("3") == OffsetRange(3)
    assert parse_offsets("0:5-9") == OffsetRange(0, 5, 9)
    assert parse_offsets("0:5-") == OffsetRange(0, 5, None)
    assert parse_offsets(" 1:-9 ") == OffsetRange(1, None, 9)
    assert parse_offsets("0:5-9").holds(0, 9) and not parse_offsets("0:5-9").holds(0, 10)
    assert not parse_offsets("0:5-9").holds(1, 6)
    for bad in ("x", "0:9-5", "-1", "0:5", "0:a-b", "", "\u0663"):
        with pytest.raises(ValueError):
            parse_offsets(bad)


def test_times_are_rfc3339_with_an_offset_or_epoch_ms() -> None:
    assert parse_time("2026-05-28T20:26:40Z") == TS
    assert parse_time("2026-05-28T22:26:40+02:00") == TS
    assert parse_time(str(TS)) == TS
    for bad in ("2026-05-28T20:26:40", "yesterday", "2026-13-01T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_time(bad)


# -- reading and selecting -------------------------------------------------------------------


def test_a_dead_letter_reads_back_its_stage_type_source_and_message_id() -> None:
    d = read_dead_letter(letter(4, "validate", "ValidationError", source_partition=2))
    assert (d.stage, d.error_type, d.source, d.source_partition) == (
        "validate",
        "ValidationError",
        "in/2/104",
        2,
    )
    assert (d.message_id, d.pointer, d.truncated) == ("m4", False, None)


def test_each_filter_narrows_and_values_of_one_filter_are_alternatives() -> None:
    recs = [
        letter(0, "infer", "InjectedModelError"),
        letter(1, "validate", "ValidationError", ts=TS + 10_000),
        letter(2, "decode", "JSONDecodeError", partition=1),
        letter(3, "infer", "RuntimeError", ts=None),
    ]

    def chosen(sel: Selection) -> list[int]:
        return [r.offset for r in recs if decide(r, sel).verdict == "replay"]

    assert chosen(Selection()) == [0, 1, 2, 3]
    assert chosen(Selection(stages=frozenset({"infer"}))) == [0, 3]
    assert chosen(Selection(stages=frozenset({"infer", "decode"}))) == [0, 2, 3]
    assert chosen(Selection(error_types=frozenset({"RuntimeError"}))) == [3]
    assert chosen(Selection(stages=frozenset({"infer"}), error_types=frozenset({"X"}))) == []
    # time: since inclusive, until exclusive; a record without a timestamp never matches
    assert chosen(Selection(since_ms=TS + 10_000)) == [1]
    assert chosen(Selection(until_ms=TS + 10_000)) == [0, 2]
    assert chosen(Selection(offsets=(OffsetRange(1),))) == [2]
    assert chosen(Selection(offsets=(OffsetRange(0, 1, 3),))) == [1, 3]
    assert chosen(Selection(offsets=(OffsetRange(0, None, 0), OffsetRange(1)))) == [0, 2]


def test_an_offset_filter_names_the_partitions_read_and_where_each_stops() -> None:
    sel = Selection(offsets=(OffsetRange(0, 5, 9), OffsetRange(0, 20, 29), OffsetRange(2)))
    assert sel.partitions([0, 1, 2, 3]) == [0, 2]
    assert Selection().partitions([1, 0]) == [0, 1]
    assert sel.end(0, 100) == 30 and sel.end(0, 25) == 25
    assert sel.end(2, 100) == 100 and Selection().end(0, 7) == 7


def test_pointer_truncated_foreign_and_unreadable_letters_are_selected_but_not_replayable() -> None:
    full = dead_letter(
        codec.Rejected(codec.Record("in", 1, 9, b"k", b"v" * 10, [], TS), "infer", "E", "x"), "dlq"
    )
    truncated = step_down(full)
    assert truncated is not None
    pointer = step_down(truncated)
    assert pointer is not None

    def rec(out: Any, offset: int) -> codec.Record:
        return codec.Record("dlq", 0, offset, out.key, out.value, out.headers, TS)

    bad_key = codec.Record("dlq", 0, 3, b"k", b"{}", letter(3).headers, TS, "header 0 key ...")
    foreign = codec.Record("dlq", 0, 4, b"k", b"{}", [("traceparent", b"1")], TS)
    cases = [rec(truncated, 1), rec(pointer, 2), bad_key, foreign]
    whys = [decide(r, Selection()).why for r in cases]
    assert [decide(r, Selection()).verdict for r in cases] == ["unreplayable"] * 4
    assert whys[0] == "truncated dead letter (original 10 bytes)"
    assert whys[1].startswith("pointer dead letter") and "in/1/9" in whys[1]
    assert whys[2].startswith("unreadable headers") and "no x-error-stage" in whys[3]
    # a stage filter leaves the foreign record out rather than reporting it
    assert decide(foreign, Selection(stages=frozenset({"infer"}))).verdict == "not_selected"


def test_our_header_wins_over_a_same_named_original_header() -> None:
    rec = letter(0, "infer", headers=[("x-error-stage", b"decode")])
    assert read_dead_letter(rec).stage == "infer"


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(HEADER_NAMES),
            st.none() | st.binary(max_size=12),
        ),
        max_size=8,
    ),
    value=st.none() | st.binary(max_size=40) | st.just(b'{"message_id": 7}'),
    ts=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_untrusted_headers_and_values_never_raise(
    headers: codec.Headers, value: bytes | None, ts: int | None
) -> None:
    rec = codec.Record("dlq", 0, 1, None, value, headers, ts)
    d = decide(rec, Selection(stages=frozenset({"infer"}), since_ms=0))
    assert d.verdict in {"replay", "unreplayable", "not_selected"}
    describe(d)
    if d.verdict == "replay":
        to_replay(d.letter, "in", 4)


# -- the record re-published ------------------------------------------------------------------


def test_a_replay_keeps_key_value_and_plain_headers_and_names_its_dead_letter() -> None:
    value = orjson.dumps({"message_id": "m7", "text": "hi"})
    original_headers: codec.Headers = [("traceparent", b"t"), ("x-customer", b"c"), ("n", None)]
    rec = letter(7, value=value, headers=original_headers, partition=1, source_partition=3)
    r = to_replay(read_dead_letter(rec), "in", 4)
    assert (r.topic, r.partition, r.key, r.value) == ("in", 3, b"conv-1", value)
    assert r.headers == [("traceparent", b"t"), ("n", None), (HEADER_REPLAY_OF, b"dlq/1/7")]
    # the original partition only when it is one of the inbound topic's
    assert to_replay(read_dead_letter(rec), "in", 2).partition is None
    assert to_replay(read_dead_letter(rec), "other", 8).partition is None


def test_the_listing_line_names_partition_offset_stage_type_time_and_message_id() -> None:
    line = describe(decide(letter(5, "infer", "InjectedModelError"), Selection()))
    assert line == (
        "partition=0 offset=5 stage=infer error_type=InjectedModelError "
        f"timestamp={datetime.fromtimestamp(TS / 1000, UTC):%Y-%m-%dT%H:%M:%S}.000Z message_id=m5"
    )
    odd = describe(decide(letter(6, value=b'{"message_id": "a b\\n"}'), Selection()))
    assert "message_id='a b\\n'" in odd


# -- the loop, against in-memory clients --------------------------------------------------------


@dataclass
class Msg:
    """What replay_kafka reads of a consumed message (to_record is swapped for .record)."""

    record: codec.Record | None
    part: int
    off: int
    err: KafkaError | None = None

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def error(self) -> KafkaError | None:
        return self.err


@dataclass
class Broker:
    """One DLQ and the replay group's committed offsets; the log has gaps (commit markers)."""

    log: dict[int, list[codec.Record]]
    high: dict[int, int]
    committed: dict[int, int] = field(default_factory=dict)
    inbound: list[tuple[Any, ...]] = field(default_factory=list)  # committed replays
    late: list[codec.Record] = field(default_factory=list)  # dead-lettered after the snapshot
    fail_commit: int = 0  # the next n commit_transaction calls fail (fatal)
    consumers: list[FakeConsumer] = field(default_factory=list)


class FakeConsumer:
    def __init__(self, broker: Broker) -> None:
        self.b = broker
        self.queue: Iterator[Msg] = iter(())
        broker.consumers.append(self)

    def list_topics(self, topic: str, timeout: float) -> Any:
        parts = self.b.log if topic == "dlq" else {0: None, 1: None, 2: None, 3: None}
        meta = type("T", (), {"error": None, "partitions": parts})
        return type("M", (), {"topics": {topic: meta}})

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(t.topic, t.partition, self.b.committed.get(t.partition, -1001))
            for t in tps
        ]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, self.b.high[tp.partition]

    def assign(self, tps: list[TopicPartition]) -> None:
        for r in self.b.late:  # arrives now, beyond the snapshot
            self.b.log[r.partition].append(r)
        msgs = []
        for tp in tps:
            recs = [r for r in self.b.log[tp.partition] if r.offset >= tp.offset]
            msgs += [Msg(r, r.partition, r.offset) for r in recs]
            last = max([tp.offset, self.b.high[tp.partition]] + [r.offset + 1 for r in recs])
            msgs.append(Msg(None, tp.partition, last, KafkaError(KafkaError._PARTITION_EOF)))
        self.queue = iter(msgs)

    def consume(self, n: int, timeout: float) -> list[Msg]:
        return [m for _, m in zip(range(n), self.queue, strict=False)]

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        pass


class FakeProducer:
    def __init__(self, broker: Broker) -> None:
        self.b = broker
        self.open: list[tuple[Any, ...]] | None = None
        self.offsets: list[TopicPartition] = []

    def init_transactions(self, timeout: float) -> None:
        self.open = None  # what a killed run left open is aborted

    def begin_transaction(self) -> None:
        self.open, self.offsets = [], []

    def produce(self, topic: str, **kw: Any) -> None:
        assert self.open is not None
        self.open.append((topic, kw.get("partition"), kw["key"], kw["value"], kw["headers"]))

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        assert metadata == "group-metadata"
        self.offsets = offsets

    def commit_transaction(self, timeout: float) -> None:
        if self.b.fail_commit:
            self.b.fail_commit -= 1
            raise KafkaException(KafkaError(KafkaError._FENCED, fatal=True))
        assert self.open is not None
        self.b.inbound += self.open
        self.b.committed.update({tp.partition: tp.offset for tp in self.offsets})
        self.open = None

    def abort_transaction(self, timeout: float) -> None:
        self.open = None

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    # Partition 0: letters at 0, 2, 4, ... (commit markers between), end 12; partition 1:
    # a validate letter and an infer letter, end 4.
    b = Broker(
        log={
            0: [letter(o, "infer" if o % 4 == 0 else "decode") for o in range(0, 12, 2)],
            1: [letter(0, "validate", partition=1), letter(2, "infer", partition=1)],
        },
        high={0: 12, 1: 4},
    )
    monkeypatch.setattr(replay_kafka, "Consumer", lambda conf: FakeConsumer(b))
    monkeypatch.setattr(replay_kafka, "Producer", lambda conf: FakeProducer(b))
    monkeypatch.setattr(replay_kafka, "to_record", lambda msg: msg.record)
    return b


SETTINGS = WorkerSettings(topics=TOPICS, transactional_id="worker-1")
INFER = Selection(stages=frozenset({"infer"}))


def run(opts: ReplayOptions) -> tuple[replay_kafka.Outcome, list[str]]:
    lines: list[str] = []
    return replay(SETTINGS, opts, lines.append), lines


def test_a_replay_publishes_the_selection_once_and_a_second_run_nothing(broker: Broker) -> None:
    first, lines = run(ReplayOptions(INFER))
    assert (first.replayed, first.not_selected, first.complete) == (4, 4, True)
    assert sorted(h[-1][1] for *_, h in broker.inbound) == [
        b"dlq/0/0",
        b"dlq/0/4",
        b"dlq/0/8",
        b"dlq/1/2",
    ]
    # the group moved to each partition's end, past the trailing commit markers
    assert broker.committed == {0: 12, 1: 4}
    assert sum(line.startswith("replayed partition=") for line in lines) == 4
    second, lines = run(ReplayOptions(INFER))
    assert (second.replayed, second.transactions, len(broker.inbound)) == (0, 0, 4)
    assert lines[0].startswith("replayed 0 of 0 dead letters")


def test_a_dry_run_lists_and_produces_and_commits_nothing(broker: Broker) -> None:
    outcome, lines = run(ReplayOptions(INFER, dry_run=True))
    assert (outcome.replayed, outcome.transactions) == (4, 0)
    assert (broker.inbound, broker.committed) == ([], {})
    assert sum(line.startswith("would replay partition=") for line in lines) == 4
    assert "dry run: nothing produced, no offset committed" in lines


def test_small_chunks_and_a_limit_resume_where_the_last_run_stopped(broker: Broker) -> None:
    first, _ = run(ReplayOptions(INFER, batch_size=1, limit=2))
    assert (first.replayed, first.limit_reached, len(broker.inbound)) == (2, True, 2)
    rest, _ = run(ReplayOptions(INFER, batch_size=1))
    assert rest.replayed == 2 and rest.complete
    replayed = [h[-1][1] for *_, h in broker.inbound]
    assert len(replayed) == len(set(replayed)) == 4


def test_a_failed_commit_replays_nothing_of_its_chunk_and_the_next_run_all(
    broker: Broker,
) -> None:
    broker.fail_commit = 1
    with pytest.raises(FatalKafkaError, match="run again to resume"):
        run(ReplayOptions(INFER))
    assert (broker.inbound, broker.committed) == ([], {})
    again, _ = run(ReplayOptions(INFER))
    assert again.replayed == 4 and len(broker.inbound) == 4


def test_letters_after_the_snapshot_wait_for_the_next_run(broker: Broker) -> None:
    broker.late = [letter(12, "infer")]
    first, _ = run(ReplayOptions(INFER))
    assert first.replayed == 4 and broker.committed[0] == 12
    broker.late, broker.high[0] = [], 13
    second, _ = run(ReplayOptions(INFER))
    assert second.replayed == 1 and broker.committed[0] == 13


def test_an_offset_range_stops_after_its_last_offset(broker: Broker) -> None:
    sel = Selection(offsets=(OffsetRange(0, 2, 4),))
    outcome, _ = run(ReplayOptions(sel))
    assert outcome.replayed == 2 and broker.committed == {0: 5}
    assert outcome.end == {0: 5}


def test_the_worker_group_and_transactional_id_are_refused(broker: Broker) -> None:
    with pytest.raises(Exception, match="of its own"):
        run(ReplayOptions(INFER, group=SETTINGS.group_id))
    with pytest.raises(Exception, match="of its own"):
        run(ReplayOptions(INFER, transactional_id="worker-1"))


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--stage", "nope"],
        ["--offsets", "0:9-5"],
        ["--since", "last tuesday"],
        ["--batch-size", "0"],
    ],
)
def test_bad_arguments_are_configuration_errors_before_any_kafka(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "replay", *args]) == ExitCode.CONFIG
    assert "configuration error" in capsys.readouterr().err


def test_an_unreachable_cluster_fails_within_the_admin_timeout_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__ADMIN_TIMEOUT_S", "2")
    assert main(["dlq", "replay", "--stage", "infer"]) == ExitCode.FATAL
    assert "cannot reach Kafka at 127.0.0.1:1 within 2s" in capsys.readouterr().err


def test_a_pointer_for_records_the_client_could_not_read_names_its_span_and_is_not_replayed() -> (
    None
):
    headers = [
        ("x-error-stage", b"fetch"),
        ("x-error-type", b"_BAD_COMPRESSION"),
        ("x-source-topic", b"support.inbound"),
        ("x-source-partition", b"3"),
        ("x-source-offset", b"120"),
        ("x-source-offset-last", b"125"),
        ("x-dead-letter-pointer", b"1"),
    ]
    record = codec.Record("support.dlq", 0, 9, None, None, headers, None)
    d = read_dead_letter(record)
    assert d.source == "support.inbound/3/120-125" and d.pointer
    decision = decide(record, Selection())
    assert decision.verdict == "unreplayable" and "support.inbound/3/120-125" in decision.why
