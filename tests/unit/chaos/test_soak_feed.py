"""The soak's input: the hostile share, where each hostile record must land, and the raw lane."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.chaos import soak_feed
from tests.chaos.report import Inputs
from tests.chaos.soak_feed import RAW_PARTITION, HostileRecords, SteadyFeed, needs_raw, poison
from tests.chaos.workload import Record


def test_only_raw_librdkafka_sends_a_bad_header_key_or_a_null_value() -> None:
    assert not needs_raw([])
    assert not needs_raw([(b"traceparent", b"00-1-01"), ("ключ".encode(), b"")])
    assert needs_raw([(b"\xff\xfekey", b"v")])
    assert needs_raw([(b"x-null", None)])


def test_the_poison_records_expect_what_the_poison_scenario_expects() -> None:
    kinds = [poison(i, "p-") for i in range(4)]
    assert [r.sent.kind for r in kinds] == [
        "poison:deep-json",
        "poison:header-key",
        "poison:none-header",
        "poison:none-header",
    ]
    assert kinds[0].sent.expect == {"route", "dlq:route", "dlq:serialize"}
    assert kinds[1].sent.expect == {"dlq:decode"} and needs_raw(kinds[1].headers)
    assert kinds[2].sent.expect == {"route"} and needs_raw(kinds[2].headers)
    assert kinds[3].sent.expect == {"dlq:decode"}
    assert len({r.sent.cid for r in kinds}) == 4


def test_hostile_records_are_seeded_unique_and_mixed() -> None:
    a, b = HostileRecords(7, pool=20), HostileRecords(7, pool=20)
    ra = [a.next() for _ in range(300)]
    rb = [b.next() for _ in range(300)]
    assert [(r.key, r.value, r.headers) for r in ra] == [(r.key, r.value, r.headers) for r in rb]
    assert len({r.sent.cid for r in ra}) == 300  # the pool is reused, the ids are not
    kinds = Counter(r.sent.kind.split(":")[0] for r in ra)
    assert kinds["fuzz"] > kinds["bad"] > 0 and kinds["poison"] > 0
    assert all(r.sent.expect for r in ra)


class FakeFeeder:
    def __init__(self) -> None:
        self.sent: list[Record] = []

    def send(self, rec: Record) -> None:
        self.sent.append(rec)

    def flush(self, timeout: float) -> int:
        return 0


def test_partition_zero_and_whatever_needs_raw_go_through_the_raw_lane_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[list[Record]] = []

    def send_raw(bootstrap: str, topic: str, inputs: Inputs, records: list[Record]) -> None:
        batches.append(records)

    monkeypatch.setattr(soak_feed, "send_raw", send_raw)
    feeder = FakeFeeder()
    feed = SteadyFeed(
        "b:9092",
        "in",
        4,
        Inputs(),
        feeder,  # type: ignore[arg-type]
        rate=2000,
        hostile=0.3,
        seed=3,
        hostile_pool=20,
        lane_every_s=0.05,
    )
    feed.start()
    deadline = time.monotonic() + 30
    while feed.produced < 400 and time.monotonic() < deadline:  # a loaded machine is slower
        time.sleep(0.05)
    feed.stop()
    assert not feed.running()
    lane = [r for batch in batches for r in batch]
    assert len(batches) > 1
    assert len(lane) + len(feeder.sent) == feed.produced == sum(feed.kinds.values()) >= 400
    assert all(r.partition == RAW_PARTITION for r in lane)
    assert all(r.partition != RAW_PARTITION and not needs_raw(r.headers) for r in feeder.sent)
    assert any(needs_raw(r.headers) for r in lane)
    assert {r.partition for r in feeder.sent} == {1, 2, 3}
    hostile = sum(n for k, n in feed.kinds.items() if k not in ("good",))
    assert 0.15 < hostile / feed.produced < 0.45
    ids = [r.sent.cid for r in lane if r.sent.kind == "good"]
    assert ids == sorted(ids, key=lambda c: int(c.rsplit("-", 1)[1]))  # produced in order


def test_one_inbound_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="2\\+ inbound partitions"):
        SteadyFeed(
            "b",
            "in",
            1,
            Inputs(),
            FakeFeeder(),  # type: ignore[arg-type]
            rate=1,
            hostile=0,
            seed=0,
            hostile_pool=0,
        )
