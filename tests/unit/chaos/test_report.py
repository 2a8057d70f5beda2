"""The chaos accounting: outputs matched to inputs by where Kafka put each input."""

from __future__ import annotations

from tests.chaos.observe import Out
from tests.chaos.report import Inputs, Sent, account


def _inputs(*sent: Sent) -> Inputs:
    inputs = Inputs()
    for s in sent:
        inputs.add(s)
    return inputs


def _out(source: tuple[int, int], message_id: str) -> Out:
    return Out("esc", 0, source[1], 0.0, source, "escalate", message_id)


def test_outputs_match_inputs_by_partition_and_offset() -> None:
    a = Sent("a", "good", frozenset({"route"}), "a", partition=0, offset=5)
    b = Sent("b", "good", frozenset({"route"}), "b", partition=1, offset=5)
    acc = account(_inputs(a, b), [_out((0, 5), "a"), _out((0, 5), "a"), _out((2, 9), "z")], None)
    assert [s.cid for s in acc.missing] == ["b"]
    assert [(s.cid, n) for s, n in acc.duplicated] == [("a", 2)]
    assert [o.message_id for o in acc.unmatched] == ["z"]


def test_an_input_delivered_without_an_offset_is_found_by_its_message_id() -> None:
    """An idempotent retry the broker answered as a duplicate reports no offset."""
    known = Sent("a", "good", frozenset({"route"}), "a", partition=0, offset=5)
    unknown = Sent("b", "good", frozenset({"route"}), "b", partition=0)
    unknown.offset = None  # type: ignore[assignment] - what msg.offset() returned
    acc = account(_inputs(known, unknown), [_out((0, 5), "a"), _out((0, 6), "b")], None)
    assert acc.missing == [] and acc.unmatched == [] and acc.duplicated == []
    twice = account(_inputs(known, unknown), [_out((0, 5), "a"), *[_out((0, 6), "b")] * 2], None)
    assert [(s.cid, n) for s, n in twice.duplicated] == [("b", 2)]
