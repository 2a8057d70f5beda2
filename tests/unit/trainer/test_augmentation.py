"""Noise augmentation is seeded and follows labels.md; the clean variant undoes the slang."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from trainer.augmentation import PREFIXES, SUFFIXES, augment, clean_variant, example_rng

TEXT = "please tell me the balance of my checking account"


def test_same_seed_same_text_and_different_seeds_differ() -> None:
    runs = [[augment(TEXT, example_rng(7, "train", i)) for i in range(200)] for _ in range(2)]
    assert runs[0] == runs[1]
    other = [augment(TEXT, example_rng(8, "train", i)) for i in range(200)]
    assert other != runs[0]


def test_rates_match_the_spec() -> None:
    outs = [augment(TEXT, example_rng(1, "x", i)) for i in range(4000)]
    changed = sum(o != TEXT for o in outs) / len(outs)
    prefixes = {p for ps in PREFIXES.values() for p in ps}
    prefixed = sum(any(o.lower().startswith(p.lower() + " ") for p in prefixes) for o in outs)
    # p(decorate)=0.8; a change needs a prefix, suffix, typo or recase after that (~0.79)
    assert 0.58 < changed < 0.72
    assert 0.28 < prefixed / len(outs) < 0.36  # 0.8 * 0.4 = 0.32


def test_suffixes_come_from_the_spec() -> None:
    suffixes = [s for ss in SUFFIXES.values() for s in ss]
    rng = random.Random(0)
    outs = [augment("hello there", rng) for _ in range(500)]
    with_suffix = [o for o in outs if any(o.lower().endswith(" " + s.lower()) for s in suffixes)]
    assert with_suffix


def test_clean_variant() -> None:
    assert (
        clean_variant("WTF my card!!! was declined... Ugh  again") == "my card. was declined. again"
    )
    assert clean_variant("omg sigh fine") == "fine"
    assert clean_variant("is it ok?!") == "is it ok?!"


@given(st.text(max_size=80))
def test_clean_variant_is_idempotent(text: str) -> None:
    once = clean_variant(text)
    assert clean_variant(once) == once
