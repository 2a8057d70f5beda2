"""CLINC150 "plus": the released JSON file, or the Hugging Face hub when reachable."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from trainer.data import dataset_file
from trainer.errors import DataError, SourceUnavailableError

# labels.md's protocol: which raw parts feed which of our splits.
PROTOCOL = {
    "train": ("train", "oos_train"),
    "val": ("val", "oos_val"),
    "test": ("test", "oos_test"),
}
HUB_ID, HUB_CONFIG = "clinc_oos", "plus"
HUB_PROBE_URL = "https://huggingface.co/api/datasets/clinc_oos"
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}

Rows = dict[str, list[tuple[str, str]]]


def load_local(path: Path) -> Rows:
    """Rows (text, clinc_intent) per split of our protocol, from data_oos_plus.json."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("CLINC150 file not found", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    rows: Rows = {}
    for split, parts in PROTOCOL.items():
        rows[split] = []
        for part in parts:
            if part not in doc:
                raise DataError(f"missing key {part!r} of the released format", path=str(path))
            for i, item in enumerate(doc[part]):
                if not (
                    isinstance(item, list)
                    and len(item) == 2
                    and all(isinstance(x, str) for x in item)
                ):
                    raise DataError(f"{part}[{i}] is not [text, intent]", path=str(path))
                rows[split].append((item[0], item[1]))
    return rows


def load_hub(timeout_s: float = 10.0) -> Rows:
    """The same rows from the hub's ``clinc_oos``/``plus`` (needs the ``datasets`` package).

    The hub stores the intent as a class id; it is turned back into its name here,
    which is the notebook's defect 1 (every example became general_question).
    """
    try:
        urllib.request.urlopen(HUB_PROBE_URL, timeout=timeout_s).close()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SourceUnavailableError(
            f"the Hugging Face hub is not reachable ({HUB_PROBE_URL}: {exc}); "
            "use --clinc-path with the released data_oos_plus.json instead"
        ) from None
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise SourceUnavailableError(
            "loading CLINC150 from the hub needs the 'datasets' package: pip install datasets"
        ) from None
    ds: Any = datasets.load_dataset(HUB_ID, HUB_CONFIG)
    rows: Rows = {}
    for ours, theirs in HUB_SPLITS.items():
        names = ds[theirs].features["intent"].int2str
        rows[ours] = [(r["text"], names(r["intent"])) for r in ds[theirs]]
    return rows


def known_intents(rows: Rows) -> set[str]:
    return {intent for split in rows.values() for _, intent in split}


def default_path() -> Path | None:
    """The CLINC150 file: $CLINC_PATH, else the vendored
    trainer/data/sets/clinc150/data_oos_plus.json (see dataset_file). Every caller asks here."""
    return dataset_file("CLINC_PATH", "clinc150/data_oos_plus.json")
