"""Stalled partitions: records waiting and a committed offset that does not move."""

from __future__ import annotations

from worker.stall import LOG_EVERY_S, StallWatch

TP = ("in", 0)


def _watch(now: list[float]) -> StallWatch:
    watch = StallWatch(stall_after_s=60, clock=lambda: now[0])
    watch.assigned([TP, ("in", 1)])
    return watch


def test_a_partition_with_unread_records_and_no_commit_stalls_after_the_limit() -> None:
    now = [0.0]
    watch = _watch(now)
    watch.error(TP, "_BAD_COMPRESSION: Decompression failed")
    now[0] = 59
    assert watch.check(lambda tp: tp == TP) == {TP: None, ("in", 1): None}
    now[0] = 61
    stalled = watch.check(lambda tp: tp == TP)[TP]
    assert stalled is not None and stalled.log and stalled.seconds == 61
    assert stalled.last_error == "_BAD_COMPRESSION: Decompression failed"
    assert watch.check(lambda tp: tp == TP)[("in", 1)] is None  # no lag there


def test_its_log_line_is_owed_once_a_minute_and_a_commit_ends_the_stall() -> None:
    now = [0.0]
    watch = _watch(now)
    now[0] = 61
    assert watch.check(lambda tp: True)[TP].log  # type: ignore[union-attr]
    now[0] = 61 + LOG_EVERY_S / 2
    assert not watch.check(lambda tp: True)[TP].log  # type: ignore[union-attr]
    now[0] = 61 + LOG_EVERY_S
    assert watch.check(lambda tp: True)[TP].log  # type: ignore[union-attr]
    watch.committed([(TP, 10)])
    assert watch.check(lambda tp: True)[TP] is None
    watch.committed([(TP, 10)])  # the same offset again is no progress
    now[0] += 61
    assert watch.check(lambda tp: True)[TP] is not None


def test_records_read_and_never_committed_are_waiting_records() -> None:
    now = [0.0]
    watch = _watch(now)
    watch.read(TP, 4)  # e.g. a model that fails every batch: read, rewound, read again
    now[0] = 61
    assert watch.check(lambda tp: False)[TP] is not None
    watch.committed([(TP, 5)])
    now[0] = 200
    assert watch.check(lambda tp: False)[TP] is None  # caught up: idle, not stalled


def test_an_idle_partition_never_stalls_and_its_clock_restarts_when_records_come() -> None:
    now = [0.0]
    watch = _watch(now)
    now[0] = 1000
    assert watch.check(lambda tp: False)[TP] is None
    now[0] = 1030
    assert watch.check(lambda tp: True)[TP] is None  # lag for 30 s only


def test_revoked_partitions_are_forgotten() -> None:
    now = [0.0]
    watch = _watch(now)
    watch.revoked([TP])
    now[0] = 100
    assert list(watch.check(lambda tp: True)) == [("in", 1)]
