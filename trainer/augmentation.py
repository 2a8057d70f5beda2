"""Noise augmentation and the clean test variant (docs/labels.md, "Noise augmentation").

Every function takes its RNG, so a (seed, split, index) triple fixes an example.
"""

from __future__ import annotations

import random
import re
import string

PREFIXES: dict[str, tuple[str, ...]] = {
    "angry": ("WTF", "OMG", "SERIOUSLY?!", "This is ridiculous!", "I can't believe"),
    "frustrated": ("Ugh", "Sigh", "Really?", "Come on", "Not again"),
    "calm": ("Hi", "Hello", "Hey there", "Excuse me", "Hi team"),
}
SUFFIXES: dict[str, tuple[str, ...]] = {
    "angry": ("!!!", "This is unacceptable!!", "Fix this NOW!", "Worst service ever!"),
    "frustrated": ("...", "Please help", "This is frustrating", "Can someone help?"),
    "calm": ("Thanks", "Thank you", "Appreciate it", "Please"),
}
BASE_SENTIMENTS = ("calm", "frustrated", "angry")

P_DECORATE = 0.8
P_PREFIX = 0.4
P_SUFFIX = 0.4
P_TYPOS = 0.3
P_TYPO_PER_LETTER = 0.08
P_RECASE = 0.2
P_UPPER_PER_CHAR = 0.3


def example_rng(seed: int, split: str, index: int) -> random.Random:
    """An RNG owned by one example: independent of order, stable across processes."""
    return random.Random(f"{seed}:{split}:{index}")


def add_typos(text: str, rng: random.Random, p: float = P_TYPO_PER_LETTER) -> str:
    """Each letter, with probability p: swapped with the next char, deleted, or doubled up."""
    chars = list(text)
    for i in range(len(chars)):
        if chars[i].isalpha() and rng.random() < p:
            kind = rng.choice(("swap", "delete", "insert"))
            if kind == "swap" and i < len(chars) - 1:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
            elif kind == "delete":
                chars[i] = ""
            elif kind == "insert":
                chars[i] = chars[i] + rng.choice(string.ascii_lowercase)
    return "".join(chars)


def recase(text: str, rng: random.Random) -> str:
    """lower, UPPER, Title, or each character upper with p = 0.3 (lower otherwise)."""
    kind = rng.randrange(4)
    if kind == 0:
        return text.lower()
    if kind == 1:
        return text.upper()
    if kind == 2:
        return text.title()
    return "".join(c.upper() if rng.random() < P_UPPER_PER_CHAR else c.lower() for c in text)


def augment(text: str, rng: random.Random) -> str:
    """Slang for a random base sentiment, then maybe typos, then maybe recasing."""
    base = rng.choice(BASE_SENTIMENTS)
    if rng.random() >= P_DECORATE:
        return text
    if rng.random() < P_PREFIX:
        text = f"{rng.choice(PREFIXES[base])} {text}"
    if rng.random() < P_SUFFIX:
        text = f"{text} {rng.choice(SUFFIXES[base])}"
    text = text.strip()
    if rng.random() < P_TYPOS:
        text = add_typos(text, rng)
    if rng.random() < P_RECASE:
        text = recase(text, rng)
    return text


_SLANG_WORDS = re.compile(r"\b(?:WTF|OMG|Ugh|Sigh)\b", re.IGNORECASE)
_BANGS = re.compile(r"!{2,}")
_DOTS = re.compile(r"\.{2,}")


def clean_variant(text: str) -> str:
    """The clean test text: slang words dropped, "!!"/".." runs to ".", spaces squeezed."""
    text = _SLANG_WORDS.sub("", text)
    text = _BANGS.sub(".", text)
    text = _DOTS.sub(".", text)
    return " ".join(text.split())
