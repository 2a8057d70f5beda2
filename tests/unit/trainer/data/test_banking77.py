"""Banking77: our stratified split of its train file, its built-in mapping, file errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import B77_FILE, CLINC_FILE
from trainer.data import SETS, banking77
from trainer.data.mapping import load_mapping
from trainer.data.splits import DataSpec, build
from trainer.errors import DataError


def _rows(per_category: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{c} text {i}", c) for c, n in per_category.items() for i in range(n)]


def test_the_split_is_stratified_disjoint_and_complete() -> None:
    rows = _rows({"a": 100, "b": 40, "c": 7})
    parts = banking77.split_rows(rows)
    assert sorted(r for p in parts.values() for r in p) == sorted(rows)
    for category, n in (("a", 100), ("b", 40)):
        counts = {name: sum(c == category for _, c in p) for name, p in parts.items()}
        assert counts["test"] == round(banking77.TEST_SHARE * n)
        assert counts["val"] == round(banking77.VAL_SHARE * n)
    assert all(sum(c == "c" for _, c in p) >= 1 for p in parts.values())  # even a small one


def test_the_split_ignores_the_training_seed_and_row_order() -> None:
    rows = _rows({"a": 50, "b": 30})
    assert banking77.split_rows(rows) == banking77.split_rows(list(reversed(rows)))
    assert banking77.split_rows(rows) != banking77.split_rows(rows, seed=1)


def test_a_file_without_a_category_column_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "train.csv"
    bad.write_text("text,label\nhello,card_arrival\n")
    with pytest.raises(DataError, match="needs 'text' and 'category'"):
        banking77.read_rows(bad)
    bad.write_text("text,category\nhello,card_arrival\n,card_arrival\n")
    with pytest.raises(DataError, match=r"train\.csv:3: empty text or category"):
        banking77.read_rows(bad)


def test_only_the_train_split_is_vendored() -> None:
    """labels.md: BANKING77's official test split is never fetched, trained or tuned on,
    so the repository holds its train file alone (10,003 rows; the test split has 3,080)."""
    folder = SETS / "banking77"
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE",
        "SOURCE.md",
        "categories.json",
        "train.csv",
    ]
    assert len(banking77.read_rows(folder / "train.csv")) == 10003


def test_the_preset_names_only_real_categories_and_the_parts_cover_every_intent() -> None:
    mapping, absent_ok = load_mapping("banking77")
    categories = json.loads((B77_FILE.parent / "categories.json").read_text())
    mapping.check_known(categories, absent_ok)
    assert len(mapping.table) == 46  # labels.md lists 3 + 20 + 9 + 14 categories
    parts = banking77.load_local(B77_FILE)
    assert {k: len(v) for k, v in parts.items()} == {"train": 7002, "val": 1003, "test": 1998}
    for part in parts.values():
        assert set(Counter(mapping(c) for _, c in part)) == {
            "refund_request",
            "billing_issue",
            "account_access",
            "technical_problem",
            "general_question",
        }


def test_train_sources_keep_a_collection_out_of_training_but_in_the_tests() -> None:
    spec = DataSpec(
        sources=("clinc", "banking77"),
        train_sources=("banking77",),
        clinc_path=CLINC_FILE,
        banking77_path=B77_FILE,
        limit=200,
    )
    data = build(spec)
    assert {ex.collection for ex in data["train"]} == {"banking77"}
    assert {ex.collection for ex in data["val"]} == {"banking77"}
    assert {ex.collection for ex in data["test_noisy"]} == {"clinc", "banking77"}
    with pytest.raises(DataError, match="--train-sources names nowhere"):
        build(DataSpec(sources=("banking77",), train_sources=("nowhere",), banking77_path=B77_FILE))


def test_adding_banking77_leaves_the_clinc_examples_as_they_were() -> None:
    path = CLINC_FILE
    alone = build(DataSpec(sources=("clinc",), clinc_path=path, limit=300))
    both = build(
        DataSpec(
            sources=("clinc", "banking77"), clinc_path=path, banking77_path=B77_FILE, limit=300
        )
    )
    for split in ("train", "val", "test_noisy"):
        assert [e for e in both[split] if e.collection == "clinc"] == alone[split]
