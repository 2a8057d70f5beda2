"""Build the protocol's splits (train, val, noisy test, clean test) and their stats."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from schemas.labels import HEADS, INTENTS
from trainer import labeling
from trainer.augmentation import augment, clean_variant, example_rng
from trainer.data import banking77, clinc, definitions, synthetic
from trainer.data.mapping import IntentMapping, load_mapping
from trainer.data.records import Example, read_labelled, write_jsonl
from trainer.errors import DataError

SPLIT_FILES = {
    "train": "train.jsonl",
    "val": "val.jsonl",
    "test_noisy": "test_noisy.jsonl",
    "test_clean": "test_clean.jsonl",
}

# Where rows come from (hub: CLINC150 from the Hugging Face hub), and the collection
# each belongs to.
Source = Literal["clinc", "hub", "banking77", "synthetic", "definitions"]
SOURCES: Final[tuple[Source, ...]] = get_args(Source)
COLLECTIONS: Final[dict[Source, str]] = {
    "clinc": "clinc",
    "hub": "clinc",
    "banking77": "banking77",
    "synthetic": "synthetic",
    "definitions": "definitions",
}
# CLINC (and synthetic) keep the RNG keys they had before Banking77 came, so their
# splits stay byte-identical to earlier releases and old figures stay comparable.
RNG_NAMESPACE = {"banking77": "banking77:", "definitions": "definitions:"}


@dataclass(frozen=True)
class DataSpec:
    """Where the raw rows come from and how they become examples."""

    sources: tuple[Source, ...] = ("clinc",)
    # Collections whose train and val parts are used; None = all. Test parts always
    # cover every source, so a model trained on one collection is scored on the others
    # (the transfer table).
    train_sources: tuple[str, ...] | None = None
    clinc_path: Path | None = None
    banking77_path: Path | None = None
    mapping: str = "support"  # CLINC's; a built-in mapping's name or a JSON/YAML file
    banking77_mapping: str = "banking77"
    seed: int = 42
    limit: int | None = None  # rows per split and source, for demos and smoke runs
    synthetic_per_intent: int = 200

    def collections(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(COLLECTIONS[s] for s in self.sources))

    def trained_collections(self) -> tuple[str, ...]:
        return self.train_sources if self.train_sources is not None else self.collections()


def raw_rows(
    spec: DataSpec, source: Source
) -> tuple[dict[str, list[tuple[str, str]]], IntentMapping]:
    if source in ("synthetic", "definitions"):
        identity = IntentMapping(source, {k: (k,) for k in INTENTS})
        if source == "definitions":
            return definitions.generate(spec.seed), identity
        return synthetic.generate(spec.synthetic_per_intent, spec.seed), identity
    if source == "banking77":
        if spec.banking77_path is None:
            raise DataError("--banking77-path is required for the banking77 source")
        rows = banking77.load_local(spec.banking77_path)
        mapping, absent_ok = load_mapping(spec.banking77_mapping)
        mapping.check_known({c for split in rows.values() for _, c in split}, absent_ok)
        return rows, mapping
    if source == "hub":
        rows = clinc.load_hub()
    elif source == "clinc":
        if spec.clinc_path is None:
            raise DataError("--clinc-path is required for the clinc source")
        rows = clinc.load_local(spec.clinc_path)
    else:
        raise DataError(f"unknown source {source!r}; expected one of {', '.join(COLLECTIONS)}")
    mapping, absent_ok = load_mapping(spec.mapping)
    mapping.check_known(clinc.known_intents(rows), absent_ok)
    return rows, mapping


def build(spec: DataSpec) -> dict[str, list[Example]]:
    """Augment, then label from the final text; the clean test mirrors the noisy one."""
    trained = set(spec.trained_collections())
    unknown = trained - set(spec.collections())
    if unknown:
        raise DataError(f"--train-sources names {', '.join(sorted(unknown))}, not among --sources")
    out: dict[str, list[Example]] = {"train": [], "val": [], "test_noisy": []}
    # A source with no rows for a split (definitions: train only) adds nothing there.
    for source in spec.sources:
        rows, mapping = raw_rows(spec, source)
        collection = COLLECTIONS[source]
        for split, items in rows.items():
            name = "test_noisy" if split == "test" else split
            if name != "test_noisy" and collection not in trained:
                continue
            if spec.limit is not None and len(items) > spec.limit:
                key = f"{spec.seed}:limit:{RNG_NAMESPACE.get(source, '')}{split}"
                items = random.Random(key).sample(items, spec.limit)
            rng_split = RNG_NAMESPACE.get(source, "") + split
            for i, (text, source_intent) in enumerate(items):
                final = augment(text, example_rng(spec.seed, rng_split, i))
                labels = labeling.label_all(final, mapping(source_intent))
                out[name].append(
                    Example(text=final, source=source_intent, collection=collection, **labels)
                )
    clean = []
    for ex in out["test_noisy"]:
        text = clean_variant(ex.text)
        labels = labeling.label_all(text, ex.intent or "general_question")
        clean.append(Example(text=text, source=ex.source, collection=ex.collection, **labels))
    out["test_clean"] = clean
    return out


def stats(splits: dict[str, list[Example]]) -> dict[str, Any]:
    """Sizes and label counts per split and head, in label order."""
    result: dict[str, Any] = {}
    for split, examples in splits.items():
        per_head = {}
        for head, labels in HEADS.items():
            counts = Counter(ex.label(head) for ex in examples)
            per_head[head] = {label: counts.get(label, 0) for label in labels}
        result[split] = {"examples": len(examples), "labels": per_head}
    return result


def fingerprint(paths: list[Path]) -> str:
    """sha256 over the given files, in order: the artifact's training-data fingerprint."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def write(splits: dict[str, list[Example]], out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, examples in splits.items():
        write_jsonl(out_dir / SPLIT_FILES[split], examples)
    summary = stats(splits)
    summary["fingerprint"] = fingerprint([out_dir / SPLIT_FILES[s] for s in splits])
    (out_dir / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read(data_dir: Path, *, skip_invalid: bool = False) -> tuple[dict[str, list[Example]], int]:
    """Read <split>.jsonl or <split>.csv (train and val required); also the skipped count."""
    splits, skipped = {}, 0
    for split, name in SPLIT_FILES.items():
        stem = name.removesuffix(".jsonl")
        found = [p for p in (data_dir / name, data_dir / f"{stem}.csv") if p.exists()]
        if found:
            splits[split], n = read_labelled(found[0], skip_invalid=skip_invalid)
            skipped += n
        elif split in ("train", "val"):
            raise DataError(f"missing split file {stem}.jsonl or {stem}.csv", path=str(data_dir))
    return splits, skipped


def format_stats(summary: dict[str, Any]) -> str:
    """A plain table: one row per split and head, label counts in label order."""
    lines = [f"{'split':<11} {'n':>6}  head       counts"]
    for split, body in summary.items():
        if not isinstance(body, dict) or "labels" not in body:
            continue
        for head, counts in body["labels"].items():
            shown = "  ".join(f"{label}={n}" for label, n in counts.items())
            lines.append(f"{split:<11} {body['examples']:>6}  {head:<9}  {shown}")
    return "\n".join(lines)
