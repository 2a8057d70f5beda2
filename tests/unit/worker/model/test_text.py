"""Text preparation: the casing marker and truncation, shared by trainer and worker."""

from __future__ import annotations

from worker.model.text import mark_casing, pad


def test_mark_casing_only_for_all_caps() -> None:
    assert mark_casing("WHY", "[ALLCAPS]") == "[ALLCAPS] WHY"
    assert mark_casing("Why", "[ALLCAPS]") == "Why"
    assert mark_casing("123 !!", "[ALLCAPS]") == "123 !!"  # nothing cased: not ALL CAPS
    assert mark_casing("WHY", None) == "WHY"


def test_pad_masks_exactly_the_real_tokens() -> None:
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_buckets_cover_every_row_once_by_length_and_cut_where_padding_would_grow() -> None:
    from worker.model.text import buckets

    lengths = [30, 5, 6, 5, 7, 6, 5, 6, 5, 6, 31, 29, 28, 6]
    groups = buckets(lengths, waste=0.2, min_rows=4)
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert len(groups) == 2  # the short ones, then the long ones
    for g in groups:
        widths = [lengths[i] for i in g]
        assert 1 - sum(widths) / (max(widths) * len(widths)) <= 0.2


def test_buckets_keep_small_batches_whole_and_never_leave_one_empty() -> None:
    from worker.model.text import buckets

    assert buckets([3, 40, 2], min_rows=8) == [[2, 0, 1]]
    assert buckets([]) == []
    assert buckets([5] * 100) == [list(range(100))]


def test_pad_rounds_the_width_up_to_a_multiple_and_masks_the_extra_tokens() -> None:
    ids, mask = pad([[5, 6, 7, 8, 9], [5]], pad_id=0, multiple=4)
    assert ids.shape == mask.shape == (2, 8)
    assert ids[0].tolist() == [5, 6, 7, 8, 9, 0, 0, 0]
    assert mask.sum(axis=1).tolist() == [5, 1]
    assert pad([[5, 6, 7, 8]], pad_id=0, multiple=4)[0].shape == (1, 4)
