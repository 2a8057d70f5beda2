"""The batcher with a fake clock: size, tokens and time each close a batch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.batching import Batcher, BatchLimits, fill


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_closes_at_max_size() -> None:
    b: Batcher[int] = Batcher(BatchLimits(3, 1000, 1.0), Clock())
    for i in range(3):
        assert not b.ready()
        b.add(i, 5)
    assert b.ready() and not b.fits(1)
    assert b.take() == [0, 1, 2] and len(b) == 0


def test_closes_when_the_next_item_would_pass_the_token_budget() -> None:
    b: Batcher[str] = Batcher(BatchLimits(100, 50, 1.0), Clock())
    b.add("a", 30)
    assert b.fits(20) and not b.fits(21)
    with pytest.raises(ValueError, match="full"):
        b.add("b", 21)


def test_an_oversized_item_still_gets_a_batch_of_its_own() -> None:
    b: Batcher[str] = Batcher(BatchLimits(10, 50, 1.0), Clock())
    assert b.fits(500)
    b.add("huge", 500)
    assert not b.fits(1)


def test_closes_max_wait_after_the_first_item() -> None:
    clock = Clock()
    b: Batcher[int] = Batcher(BatchLimits(10, 100, 0.05), clock)
    assert b.time_left() == 0.05 and not b.ready()  # empty: nothing is waiting
    b.add(1, 1)
    clock.now += 0.03
    b.add(2, 1)  # a later item does not move the deadline
    assert b.time_left() == pytest.approx(0.02)
    assert not b.ready()
    clock.now += 0.02
    assert b.ready()


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=200))
def test_batches_respect_the_limits_and_keep_order(tokens: list[int]) -> None:
    b: Batcher[int] = Batcher(BatchLimits(8, 64, 1.0), Clock())
    batches = []
    for i, t in enumerate(tokens):
        if not b.fits(t):
            batches.append(b.take())
        b.add(i, t)
    batches.append(b.take())
    assert [i for batch in batches for i in batch] == list(range(len(tokens)))
    for batch in batches:
        assert len(batch) <= 8
        assert len(batch) == 1 or sum(tokens[i] for i in batch) <= 64


def test_fill_closes_batches_as_the_batcher_does() -> None:
    limits = BatchLimits(max_size=3, max_tokens=10, max_wait_s=0.05)
    sizes = [4, 4, 1, 6, 1, 1, 1, 1, 20, 2]
    batches = list(fill(range(len(sizes)), limits, lambda i: sizes[i]))
    # 4+4+1 (size 3), 6+1+1 (size 3), 1 then 20 would pass 10 tokens, 20 alone, 2
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7], [8], [9]]
    assert list(fill([], limits, len)) == []
