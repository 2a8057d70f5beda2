"""One batch through the model: per-item results by index, failures isolated, the probe."""

from __future__ import annotations

from tests.unit.worker.fakes import POISON, FlakyModel, RowDroppingModel
from worker import codec
from worker.inference import BatchResult, Failure, Skipped, infer
from worker.intake import Item
from worker.model.protocol import Prediction

PROBE = [1, 3, 2]


def _item(i: int, ids: list[int]) -> Item:
    rec = codec.Record("in", 0, i, None, b"{}", [], None)
    return Item(rec, codec.Accepted(rec, {}, f"m{i}", None, "t"), ids)


def test_a_failing_message_is_isolated_and_only_it_fails() -> None:
    model = FlakyModel()
    items = [_item(i, [1, 2, POISON if i == 5 else 3]) for i in range(8)]
    result = infer(model, items, PROBE)
    assert not result.model_broken
    assert [type(r) for r in result.results] == [Prediction] * 5 + [Failure] + [Prediction] * 2
    failure = result.results[5]
    assert isinstance(failure, Failure) and isinstance(failure.error, RuntimeError)
    # 8, its retry, then halves: [0..3] ok, [4..7] fails, [4,5] fails, [4] ok, [5] fails, [6,7] ok
    assert model.batches == [8, 8, 4, 4, 2, 1, 1, 2]
    assert result.model_calls == len(model.batches)


def test_a_healthy_batch_is_one_forward_pass() -> None:
    model = FlakyModel()
    result = infer(model, [_item(i, [1, 2]) for i in range(16)], PROBE)
    assert model.batches == [16] and result.predicted == 16


def test_items_without_token_ids_are_skipped_and_keep_their_place() -> None:
    model = FlakyModel()
    items = [_item(0, [1, 2]), _item(1, []), _item(2, [1, 2])]
    result = infer(model, items, PROBE)
    assert [type(r) for r in result.results] == [Prediction, Skipped, Prediction]
    assert model.batches == [2]  # the skipped one never reached the model


def test_a_batch_with_nothing_for_the_model_makes_no_call() -> None:
    model = FlakyModel()
    assert infer(model, [_item(0, [])], PROBE) == BatchResult([Skipped()], 0.0, 0, False)
    assert model.batches == []


def test_a_whole_batch_failing_with_a_passing_probe_is_bad_input_not_a_broken_model() -> None:
    result = infer(FlakyModel(), [_item(i, [POISON]) for i in range(4)], PROBE)
    assert all(isinstance(r, Failure) for r in result.results) and not result.model_broken


def test_a_model_that_loses_rows_is_a_broken_model_not_a_crash() -> None:
    result = infer(RowDroppingModel(), [_item(i, [1, 2]) for i in range(4)], PROBE)
    assert all(isinstance(r, Failure) for r in result.results)
    assert result.model_broken  # the probe lost its row too
