"""BANKING77's train file, split by us (stratified by category) into train, val and test.

Its official test split is kept for outside evaluation: never fetched, trained or tuned
on here (docs/labels.md). Our test part is drawn from the train file instead.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

from trainer.data import dataset_file
from trainer.errors import DataError

# Shares of each category, drawn before training sees anything; the rest trains.
TEST_SHARE = 0.2
VAL_SHARE = 0.1
# The split has its own fixed seed: --seed varies augmentation and training, never
# which rows are held out, so every run is scored on the same test part.
SPLIT_SEED = 77

Rows = dict[str, list[tuple[str, str]]]


def read_rows(path: Path) -> list[tuple[str, str]]:
    """(text, category) per row of train.csv, refusing a malformed file with its line."""
    if not path.exists():
        raise DataError("BANKING77 file not found", path=str(path))
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"text", "category"} <= set(reader.fieldnames):
            raise DataError("CSV header needs 'text' and 'category'", path=str(path), line=1)
        rows = []
        for row in reader:
            text, category = (row.get("text") or "").strip(), (row.get("category") or "").strip()
            if not text or not category:
                raise DataError("empty text or category", path=str(path), line=reader.line_num)
            rows.append((text, category))
    if not rows:
        raise DataError("no rows", path=str(path))
    return rows


def split_rows(rows: list[tuple[str, str]], seed: int = SPLIT_SEED) -> Rows:
    """Stratified by category: each category gives TEST_SHARE to test and VAL_SHARE to val.

    Each category is shuffled by its own RNG, so adding a category moves no other row.
    """
    by_category: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_category[row[1]].append(row)
    out: Rows = {"train": [], "val": [], "test": []}
    for category in sorted(by_category):
        items = sorted(by_category[category])
        random.Random(f"{seed}:banking77:{category}").shuffle(items)
        n_test = max(1, round(TEST_SHARE * len(items)))
        n_val = max(1, round(VAL_SHARE * len(items)))
        out["test"] += items[:n_test]
        out["val"] += items[n_test : n_test + n_val]
        out["train"] += items[n_test + n_val :]
    return out


def load_local(path: Path) -> Rows:
    return split_rows(read_rows(path))


def default_path() -> Path | None:
    """$BANKING77_PATH, else the vendored trainer/data/sets/banking77/train.csv."""
    return dataset_file("BANKING77_PATH", "banking77/train.csv")
