"""Text as the model sees it: the casing marker, truncation, token ids, padding.

The trainer and the worker prepare text with these functions only, so a message is
tokenized the same way when the model is evaluated and when it is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

# An uncased tokenizer lowercases "WTF FIX THIS" to "wtf fix this", hiding the ALL CAPS
# that the sentiment rule reads. This token, prepended to all-caps texts, restores it.
CASING_MARKER = "[ALLCAPS]"


def mark_casing(text: str, marker: str | None) -> str:
    """Prepend the marker when the text is ALL CAPS (str.isupper, as the rule uses)."""
    return f"{marker} {text}" if marker and text.isupper() else text


class Tokenized(NamedTuple):
    """Token ids per text, and whether each text was cut to fit max_length."""

    ids: list[list[int]]
    truncated: list[bool]


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int, marker: str | None
) -> Tokenized:
    """Ids for each text in one tokenizer call, at most max_length each, ending in [SEP]."""
    if not texts:
        return Tokenized([], [])
    marked = [mark_casing(t, marker) for t in texts]
    # One token past max_length tells "truncated" from "exactly fits" without a second,
    # untruncated tokenization of a possibly huge text.
    ids: list[list[int]] = tokenizer(
        marked, truncation=True, max_length=max_length + 1, add_special_tokens=True
    )["input_ids"]
    truncated = [len(x) > max_length for x in ids]
    sep = int(tokenizer.sep_token_id)
    cut = [[*x[: max_length - 1], sep] if t else x for x, t in zip(ids, truncated, strict=True)]
    return Tokenized(cut, truncated)


def pad(
    batch_ids: Sequence[Sequence[int]], pad_id: int, multiple: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and attention mask [B, T], padded to the batch's longest member, rounded up to
    a ``multiple`` of tokens."""
    width = -(-max(len(x) for x in batch_ids) // multiple) * multiple
    ids = np.full((len(batch_ids), width), pad_id, dtype=np.int64)  # [B, T]
    mask = np.zeros((len(batch_ids), width), dtype=np.int64)
    for row, x in enumerate(batch_ids):
        ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return ids, mask


def buckets(lengths: Sequence[int], waste: float = 0.2, min_rows: int = 8) -> list[list[int]]:
    """Row indices in sub-batches of similar length, for backends that run padded.

    Sorted by length and cut where padding the next (longer) row in would make the
    sub-batch more than ``waste`` padding, once it has ``min_rows``: each extra run costs
    a fixed overhead, each padded token as much as a real one. Every index once, in
    order of length.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    out: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if len(current) >= min_rows and 1 - (real + n) / (n * (len(current) + 1)) > waste:
            out.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        out.append(current)
    return out
