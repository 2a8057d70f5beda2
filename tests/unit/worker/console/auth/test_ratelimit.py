from __future__ import annotations

from worker.console.auth.ratelimit import FailureLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_refused_after_its_failures_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limit = FailureLimit(3, 60, clock)
    for _ in range(3):
        assert limit.retry_after("ana") == 0
        limit.failed("ana")
        clock.now += 10
    assert limit.retry_after("ana") == 30  # the first failure (t=0) leaves at t=60
    assert limit.retry_after("bo") == 0  # per key
    clock.now = 60
    assert limit.retry_after("ana") == 0


def test_success_forgets_and_undo_takes_back_one() -> None:
    limit = FailureLimit(2, 60, Clock())
    limit.failed("ana")
    limit.failed("ana")
    assert limit.retry_after("ana") > 0
    limit.undo("ana")
    assert limit.retry_after("ana") == 0
    limit.failed("ana")
    limit.succeeded("ana")
    limit.failed("ana")
    assert limit.retry_after("ana") == 0


def test_the_keys_are_bounded_least_recent_first() -> None:
    limit = FailureLimit(1, 60, Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        limit.failed(key)
    assert limit.retry_after("a") == 0  # forgotten
    assert limit.retry_after("b") > 0 and limit.retry_after("c") > 0
