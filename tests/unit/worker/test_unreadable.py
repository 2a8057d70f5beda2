"""The search for an unreadable span, against a partition laid out in batches, some of
which the client cannot read (what librdkafka reports for each seek is simulated)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.unreadable import PROBE_TIMEOUT_S, Span, Spans

TP = ("in", 0)


@dataclass
class Log:
    """A partition: batches of (first offset, last offset, readable)."""

    batches: list[tuple[int, int, bool]]
    sought: list[int] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.batches[-1][1] + 1 if self.batches else 0

    def fetch(self, x: int) -> tuple[str, int] | None:
        """What a fetch from ``x`` delivers first: ("record", offset), ("error", batch's
        first offset), or None past the end."""
        for first, last, readable in self.batches:
            if last >= x:
                return ("record", max(first, x)) if readable else ("error", first)
        return None


def _layout(sizes: list[tuple[int, bool]]) -> Log:
    batches, offset = [], 0
    for size, readable in sizes:
        batches.append((offset, offset + size - 1, readable))
        offset += size
    return Log(batches)


def _search(log: Log, start: int, clock: list[float] | None = None) -> tuple[Span | None, int]:
    """Answer probes as the consumer would until a span is found; (span, fetches)."""
    now = clock or [0.0]
    spans = Spans(lambda _t, _p, x: log.sought.append(x), lambda _t, _p: log.end, lambda: now[0])
    answer = log.fetch(start)
    assert answer is not None and answer[0] == "error"
    spans.new_chunk()
    span = spans.on_error(TP, answer[1], "_BAD_COMPRESSION", "Decompression failed")
    fetches = 0
    while span is None:
        fetches += 1
        assert fetches < 200, log.sought
        spans.new_chunk()
        answer = log.fetch(log.sought[-1])
        assert answer is not None, "a probe past the end: the gallop must stop at the watermark"
        kind, offset = answer
        if kind == "record":
            answered, span = spans.take_record(TP, offset)
            assert answered
        else:
            span = spans.on_error(TP, offset, "_BAD_COMPRESSION", "Decompression failed")
    assert not spans.searching(TP)
    return span, fetches


def test_a_single_unreadable_record_costs_one_fetch_and_routing_resumes_behind_it() -> None:
    log = _layout([(3, True), (1, False), (5, True)])
    span, fetches = _search(log, 3)
    assert span == Span("in", 0, 3, 3, "_BAD_COMPRESSION", "Decompression failed")
    assert fetches == 1 and log.sought == [4, 4]  # the probe, then where routing resumes


def test_a_batch_of_many_records_is_one_span_found_in_logarithmic_fetches() -> None:
    log = _layout([(10, True), (1000, False), (10, True)])
    span, fetches = _search(log, 10)
    assert span is not None and (span.first, span.last, span.offsets) == (10, 1009, 1000)
    assert fetches <= 2 * 10 + 2
    assert log.sought[-1] == 1010


def test_a_span_at_the_end_of_the_partition_stops_at_the_high_watermark() -> None:
    log = _layout([(2, True), (5, False)])
    span, _ = _search(log, 2)
    assert span is not None and (span.first, span.last) == (2, 6)
    assert max(log.sought) == 7  # nothing was fetched past the end but the resume point


def test_two_unreadable_batches_back_to_back_are_two_spans() -> None:
    log = _layout([(4, False), (3, False), (2, True)])
    first, _ = _search(log, 0)
    second, _ = _search(log, log.sought[-1])
    assert first is not None and (first.first, first.last) == (0, 3)
    assert second is not None and (second.first, second.last) == (4, 6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.booleans()), min_size=1, max_size=12))
def test_every_unreadable_batch_is_one_span_and_no_readable_record_is_skipped(
    sizes: list[tuple[int, bool]],
) -> None:
    log = _layout(sizes)
    found: list[tuple[int, int]] = []
    position = 0
    while (answer := log.fetch(position)) is not None:
        if answer[0] == "record":
            position = answer[1] + 1  # routed as usual
            continue
        span, _ = _search(log, position)
        assert span is not None and span.first == answer[1]
        found.append((span.first, span.last))
        position = log.sought[-1]
        assert position == span.last + 1
    assert found == [(first, last) for first, last, readable in log.batches if not readable]


def test_what_was_fetched_before_the_seek_answers_nothing() -> None:
    sought: list[int] = []
    spans = Spans(lambda _t, _p, x: sought.append(x), lambda _t, _p: 100, lambda: 0.0)
    spans.new_chunk()
    assert spans.on_error(TP, 5, "_BAD_COMPRESSION", "x") is None and sought == [6]
    # the same chunk repeats the error (a second fetch before the seek): not an answer
    assert spans.stale(TP)
    assert spans.on_error(TP, 5, "_BAD_COMPRESSION", "x") is None and sought == [6]
    spans.new_chunk()
    assert not spans.stale(TP)
    assert spans.take_record(TP, 6) == (True, Span("in", 0, 5, 5, "_BAD_COMPRESSION", "x"))


def test_a_fetch_error_at_the_fetched_offset_skips_one_offset_at_a_time() -> None:
    """CORRUPT_MESSAGE from the broker names the offset fetched, not a batch's first."""
    sought: list[int] = []
    spans = Spans(lambda _t, _p, x: sought.append(x), lambda _t, _p: 100, lambda: 0.0)
    spans.new_chunk()
    assert spans.on_error(TP, 7, "CORRUPT_MESSAGE", "corrupt") is None
    spans.new_chunk()
    span = spans.on_error(TP, 8, "CORRUPT_MESSAGE", "corrupt")  # the probe at 8 fails at 8
    assert span is not None and (span.first, span.last) == (7, 7) and sought[-1] == 8


def test_errors_that_clear_on_their_own_start_no_search() -> None:
    spans = Spans(lambda *_: None, lambda _t, _p: 100, lambda: 0.0)
    for code in ("_TRANSPORT", "NOT_LEADER_OR_FOLLOWER", "_PARTITION_EOF", "_TIMED_OUT"):
        assert spans.on_error(TP, 5, code, "x") is None
    assert not spans.searching(TP)


def test_an_unanswered_probe_is_sent_again_and_a_transient_error_is_no_answer() -> None:
    now, sought = [0.0], []
    spans = Spans(lambda _t, _p, x: sought.append(x), lambda _t, _p: 100, lambda: now[0])
    spans.on_error(TP, 5, "_BAD_COMPRESSION", "x")
    spans.new_chunk()
    assert spans.on_error(TP, 6, "_TRANSPORT", "broker down") is None
    spans.resend_stale()
    assert sought == [6]
    now[0] = PROBE_TIMEOUT_S + 1
    spans.resend_stale()
    assert sought == [6, 6] and spans.searching(TP)


def test_a_record_before_the_probe_means_someone_else_moved_the_consumer() -> None:
    spans = Spans(lambda *_: None, lambda _t, _p: 100, lambda: 0.0)
    spans.on_error(TP, 5, "_BAD_COMPRESSION", "x")
    spans.new_chunk()
    assert spans.take_record(TP, 2) == (False, None)  # route it; the search is dropped
    assert not spans.searching(TP)


def test_forget_drops_searches() -> None:
    spans = Spans(lambda *_: None, lambda _t, _p: 100, lambda: 0.0)
    spans.on_error(TP, 5, "_BAD_COMPRESSION", "x")
    spans.on_error(("in", 1), 5, "_BAD_COMPRESSION", "x")
    spans.forget({TP})
    assert not spans.searching(TP) and spans.searching(("in", 1))
    spans.forget()
    assert not spans.searches
