"""Noise augmentation is seeded and follows labels.md; the clean variant undoes the slang."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer import augmentation
from trainer.augmentation import PREFIXES, SUFFIXES, augment, clean_variant, example_rng

TEXT = "please tell me the balance of my checking account"  # starts and ends with no slang


def test_same_seed_same_text_and_different_seeds_differ() -> None:
    runs = [[augment(TEXT, example_rng(7, "train", i)) for i in range(200)] for _ in range(2)]
    assert runs[0] == runs[1]
    other = [augment(TEXT, example_rng(8, "train", i)) for i in range(200)]
    assert other != runs[0]


def test_rates_match_the_spec() -> None:
    outs = [augment(TEXT, example_rng(1, "x", i)) for i in range(4000)]
    changed = sum(o != TEXT for o in outs) / len(outs)
    # p(decorate)=0.8; a change needs a prefix, suffix, typo or recase after that (~0.79)
    assert 0.58 < changed < 0.72


# labels.md: with p = 0.8 decorate, then with p = 0.4 each (independently) a prefix and a
# suffix from the sentiment's list. The spec's numbers, not the module's constants: a
# changed constant must fail here.
SLANG_RATE = 0.8 * 0.4
SAMPLES = 50_000
SIGMAS = 4.0  # the seed is fixed, so this passes or fails every time; 4 sigma ~ 0.008


@pytest.mark.parametrize("where", ["prefix", "suffix"])
def test_prefix_and_suffix_rates_match_the_spec(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Typos come after the slang and can garble it past recognition; off, the RNG still
    # draws the same numbers. Recasing is undone by comparing lower case.
    monkeypatch.setattr(augmentation, "P_TYPOS", 0.0)
    if where == "prefix":
        slang = tuple(f"{p.lower()} " for ps in PREFIXES.values() for p in ps)
        has = str.startswith
    else:
        slang = tuple(f" {s.lower()}" for ss in SUFFIXES.values() for s in ss)
        has = str.endswith
    outs = [augment(TEXT, example_rng(3, where, i)).lower() for i in range(SAMPLES)]
    share = sum(has(o, slang) for o in outs) / SAMPLES
    tolerance = SIGMAS * math.sqrt(SLANG_RATE * (1 - SLANG_RATE) / SAMPLES)
    assert abs(share - SLANG_RATE) < tolerance, f"{where} share {share:.4f}"


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
