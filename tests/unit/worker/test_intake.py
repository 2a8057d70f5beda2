"""Intake: one item per record, in order, with token ids only where the model is needed."""

from __future__ import annotations

import orjson

from tests.unit.worker.fakes import FlakyModel
from worker import codec
from worker.intake import intake


def _record(offset: int, value: bytes | None) -> codec.Record:
    return codec.Record("in", 0, offset, None, value, [], None)


def test_each_record_gets_one_item_in_order() -> None:
    records = [
        _record(0, orjson.dumps({"message_id": "a", "text": "refund please"})),
        _record(1, b"not json"),
        _record(2, orjson.dumps({"message_id": "c", "text": "   "})),
        _record(3, orjson.dumps({"message_id": "d", "text": "poison pill"})),
    ]
    items = intake(records, FlakyModel(), max_text_chars=100)
    assert [i.record.offset for i in items] == [0, 1, 2, 3]
    assert [type(i.outcome).__name__ for i in items] == [
        "Accepted",
        "Rejected",
        "Accepted",
        "Accepted",
    ]
    # token ids for the model's texts only: not the rejected one, not the blank one
    assert [bool(i.ids) for i in items] == [True, False, False, True]
