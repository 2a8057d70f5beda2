"""Rule keywords where the augmentation never puts them: what the noisy test cannot see.

In the training and test sets nearly every "ridiculous", "unacceptable" and "worst"
comes from the prefix "This is ridiculous!" or a suffix ending in "!" (the raw texts
hold 3, 1 and 1 of them in 33,853), and half of the "now"s from "Fix this NOW!". A
model can score well on the noisy test by reading the template and the "!" instead of
the keyword, then call "This is ridiculous, someone stole my card" calm. This writes a
labelled JSONL of the test parts' raw texts (never trained on) with one such phrase put
before or after them, without "!", labelled by labels.md's rules from the final text:

    python -m tools.keyword_probe --out /tmp/keyword_probe.jsonl
    support-trainer evaluate --model DIR --data /tmp/keyword_probe.jsonl

Only keywords the augmentation teaches are used: a keyword no training row carries
(pathetic, annoyed, ...) measures nothing a model could have learned.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from trainer import labeling
from trainer.data import banking77, clinc
from trainer.data.records import Example, write_jsonl
from trainer.data.splits import COLLECTIONS, DataSpec, Source, raw_rows

# Each phrase carries one keyword of labeling.py's lists that the augmentation's
# prefixes and suffixes also carry, in words and punctuation they never use.
PHRASES = (
    "this is ridiculous",
    "ridiculous",
    "totally unacceptable",
    "unacceptable service",
    "the worst bank",
    "worst experience",
    "i need this now",
    "fix it now",
    "please",
    "thanks",
    "thank you",
    "i appreciate it",
)
SEPARATORS = (", ", ". ", " - ")
SOURCES: tuple[Source, ...] = ("clinc", "banking77")


def build(spec: DataSpec, n: int = 600, seed: int = 0) -> list[Example]:
    """n rows: a test text (clean, as released) with a phrase before or after it."""
    rng = random.Random(f"keyword-probe:{seed}")
    pool: list[tuple[str, str, str]] = []
    for source in spec.sources:
        rows, mapping = raw_rows(spec, source)
        pool += [(text, mapping(intent), COLLECTIONS[source]) for text, intent in rows["test"]]
    out = []
    for i, (text, intent, collection) in enumerate(rng.sample(pool, min(n, len(pool)))):
        phrase, sep = PHRASES[i % len(PHRASES)], rng.choice(SEPARATORS)
        text = text.strip().rstrip(".?")
        final = (
            f"{phrase.capitalize()}{sep}{text}" if rng.random() < 0.5 else f"{text}{sep}{phrase}"
        )
        out.append(Example(text=final, collection=collection, **labeling.label_all(final, intent)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.keyword_probe", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="labelled JSONL to write")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = DataSpec(
        sources=SOURCES, clinc_path=clinc.default_path(), banking77_path=banking77.default_path()
    )
    examples = build(spec, args.n, args.seed)
    write_jsonl(args.out, examples)
    print(f"wrote {len(examples)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
