"""Build the protocol's splits (train, val, noisy test, clean test) and their stats."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

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
# How `limit` picks a train split's rows (val and test parts are always a random draw, so
# they keep the real label mix that calibration, the OOD threshold and the figures need).
Subset = Literal["random", "balanced"]
SUBSETS: Final[tuple[Subset, ...]] = get_args(Subset)

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
    # random: `limit` rows drawn before augmentation. balanced: every train row is
    # augmented and labelled as the full set would have it, then `limit` of them are
    # drawn stratified over the labels (balanced_subset), so a short run still sees the
    # rare keyword-driven labels (angry, high urgency) often enough to learn them.
    subset: Subset = "random"
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
            limited = spec.limit is not None and len(items) > spec.limit
            balanced = limited and spec.subset == "balanced" and name == "train"
            key = f"{spec.seed}:limit:{RNG_NAMESPACE.get(source, '')}{split}"
            if limited and not balanced:
                items = random.Random(key).sample(items, cast(int, spec.limit))
            rng_split = RNG_NAMESPACE.get(source, "") + split
            examples = []
            for i, (text, source_intent) in enumerate(items):
                final = augment(text, example_rng(spec.seed, rng_split, i))
                labels = labeling.label_all(final, mapping(source_intent))
                examples.append(
                    Example(text=final, source=source_intent, collection=collection, **labels)
                )
            if balanced:
                examples = balanced_subset(examples, cast(int, spec.limit), random.Random(key))
            out[name] += examples
    clean = []
    for ex in out["test_noisy"]:
        text = clean_variant(ex.text)
        labels = labeling.label_all(text, ex.intent or "general_question")
        clean.append(Example(text=text, source=ex.source, collection=ex.collection, **labels))
    out["test_clean"] = clean
    return out


def stratum_quotas(sizes: dict[Any, int], n: int, power: float = 0.5) -> dict[Any, int]:
    """Rows per stratum summing to min(n, total): shares proportional to each stratum's
    size to the ``power`` (1: as a random draw would, 0.5: the square root), capped at its
    size (the rest goes to the others), whole rows by largest remainder."""
    n = min(n, sum(sizes.values()))
    share: dict[Any, float] = {}
    left, open_ = float(n), {k for k, v in sizes.items() if v > 0}
    while open_:
        weight = sum(sizes[k] ** power for k in open_)
        full = {k for k in open_ if left * sizes[k] ** power / weight >= sizes[k]}
        if not full:
            share.update({k: left * sizes[k] ** power / weight for k in open_})
            break
        for k in full:
            share[k] = float(sizes[k])
            left -= sizes[k]
        open_ -= full
    quotas = {k: math.floor(v) for k, v in share.items()}
    by_remainder = sorted(share, key=lambda k: (quotas[k] - share[k], str(k)))
    for k in by_remainder[: n - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


def balanced_subset(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """n of the examples: each intent's share as in the whole (as a random draw would
    give), and within an intent, strata of (urgency, sentiment) with square-root shares;
    drawn at random within a stratum, returned in their given order.

    The rare labels come from keywords, angry almost only from the ones the augmentation
    adds (labels.md): a random draw holds few angry and high-urgency rows (docs/model.md,
    "The demo preset", counts them), too few for a short run to learn "ridiculous" ->
    angry away from the one template it comes in. The square
    root doubles them and keeps the common calm rows the majority. The intent mix is not
    touched: shifting it toward the support intents cost general questions (they were
    escalated) more than it bought."""
    by_intent: dict[str | None, dict[tuple[str | None, ...], list[int]]] = {}
    for i, ex in enumerate(examples):
        by_intent.setdefault(ex.intent, {}).setdefault((ex.urgency, ex.sentiment), []).append(i)
    intent_quotas = stratum_quotas(
        {k: sum(map(len, strata.values())) for k, strata in by_intent.items()}, n, power=1.0
    )
    chosen: list[int] = []
    for intent in sorted(by_intent, key=str):
        strata = by_intent[intent]
        quotas = stratum_quotas({k: len(v) for k, v in strata.items()}, intent_quotas[intent])
        for key in sorted(strata, key=str):
            chosen += rng.sample(strata[key], quotas[key])
    return [examples[i] for i in sorted(chosen)]


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
