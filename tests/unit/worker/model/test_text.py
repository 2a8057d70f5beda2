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
