"""The review queue's sampling policy: which routed results agents should label first.

Pure: no Kafka. The pipeline asks ``Sampler.pick`` for a committed-to-be batch's picks,
produces them to ``support.review`` in the batch's own transaction (``worker.kafka.commit``),
and calls ``Sampler.taken`` once that transaction committed, so an aborted batch spends
no budget and leaves no signature behind.

- Every ``unfamiliar`` and ``low_confidence`` result is a candidate: those are where the
  model is weakest and where a label teaches it most.
- A share of the confident ones (``random_share``) is queued at random, drawn from a hash
  of the message_id: the same message is drawn the same way on every replica and after a
  rewind, and the sample estimates the model's accuracy without the uncertainty bias.
- Candidates are ranked by uncertainty: 1 minus the smaller of the intent and action
  heads' margins (top probability minus the second), the two heads agents correct.
- Diversity: a candidate whose token SimHash is within ``max_hamming`` bits of a
  recently queued message is a near-copy and is skipped, so agents do not label twenty
  copies of one question.
- A token bucket of ``max_per_minute`` (one minute of burst) bounds the rate; random
  picks take it first, so the unbiased sample is cut only when the budget is below it.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import orjson

from schemas.learning import ReviewReason
from worker.inference import ItemResult
from worker.intake import Item
from worker.model.protocol import Prediction
from worker.outgoing import Outgoing
from worker.settings import ReviewSettings

UNCERTAIN_REASONS: Final[frozenset[str]] = frozenset({"unfamiliar", "low_confidence"})
# The heads whose margin ranks a candidate.
RANKING_HEADS: Final = ("intent", "action")
_BITS = np.arange(64, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads token ids over 64 bits


@dataclass(frozen=True)
class Pick:
    """One result to queue: its index in the batch and the review block it carries."""

    index: int
    reason: ReviewReason
    priority: float
    weight: float
    signature: int

    def review(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "priority": round(self.priority, 6),
            "weight": round(self.weight, 6),
            "signature": f"{self.signature:016x}",
        }


def drawn(message_id: str, share: float) -> bool:
    """Whether ``message_id`` falls in the random share: the same answer everywhere."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def margin(prediction: Prediction, head: str) -> float:
    """Top probability minus the second of one head (1: certain, 0: a tie)."""
    probs = sorted(prediction.predictions[head]["probabilities"].values(), reverse=True)
    return float(probs[0] - (probs[1] if len(probs) > 1 else 0.0))


def uncertainty(prediction: Prediction) -> float:
    heads = [h for h in RANKING_HEADS if h in prediction.predictions]
    if not heads:
        return 0.0
    return min(1.0, max(0.0, 1.0 - min(margin(prediction, h) for h in heads)))


def simhash(ids: Sequence[int]) -> int:
    """A 64-bit SimHash of a message's token unigrams and bigrams (special tokens off).

    Two messages that share most of their tokens get signatures a few bits apart; the
    tokenizer's ids are features enough, and the text is never looked at again.
    """
    tokens = np.asarray(ids[1:-1] if len(ids) > 2 else ids, dtype=np.uint64)
    if tokens.size == 0:
        return 0
    feats = np.concatenate([tokens, tokens[:-1] * np.uint64(31_337) + tokens[1:]])
    with np.errstate(over="ignore"):
        hashed = (feats + np.uint64(1)) * _MIX
        hashed ^= hashed >> np.uint64(29)
        hashed *= _MIX
    bits = ((hashed[:, None] >> _BITS) & np.uint64(1)).astype(np.int64)
    votes = 2 * bits.sum(axis=0) - len(hashed)
    return int(sum(1 << int(b) for b in np.flatnonzero(votes > 0)))


class Sampler:
    def __init__(
        self, settings: ReviewSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.s = settings
        self.clock = clock
        self.capacity = settings.max_per_minute  # one minute of burst
        self.rate = settings.max_per_minute / 60.0
        self.tokens = self.capacity
        self.refilled_at = clock()
        self.recent: deque[int] = deque(maxlen=max(settings.diversity_window, 1))
        self.skipped_near_copy = 0
        self.skipped_budget = 0

    def budget(self) -> int:
        elapsed = max(0.0, self.clock() - self.refilled_at)
        return int(min(self.capacity, self.tokens + elapsed * self.rate))

    def pick(
        self, items: Sequence[Item], outgoing: Sequence[Outgoing], results: Sequence[ItemResult]
    ) -> list[Pick]:
        """The batch's results to queue, random picks first, then by uncertainty."""
        randoms: list[Pick] = []
        uncertain: list[tuple[float, int, ReviewReason]] = []
        for n, (item, out, result) in enumerate(zip(items, outgoing, results, strict=True)):
            if out.is_dead_letter or not isinstance(result, Prediction):
                continue  # dead letters and blank texts: nothing for an agent to label
            if out.reason in UNCERTAIN_REASONS:
                reason: ReviewReason = (
                    "unfamiliar" if out.reason == "unfamiliar" else "low_confidence"
                )
                uncertain.append((uncertainty(result), n, reason))
            elif drawn(item.outcome.message_id, self.s.random_share):  # type: ignore[union-attr]
                weight = 1.0 / self.s.random_share
                randoms.append(Pick(n, "random", uncertainty(result), weight, simhash(item.ids)))
        budget = self.budget()
        picks = randoms[:budget]
        self.skipped_budget += len(randoms) - len(picks)
        seen = np.asarray(self.recent, dtype=np.uint64)
        uncertain.sort(key=lambda c: (-c[0], c[1]))
        for rank, (priority, n, reason) in enumerate(uncertain):
            if len(picks) >= budget:
                self.skipped_budget += len(uncertain) - rank
                break
            signature = simhash(items[n].ids)
            if self._near(signature, seen, picks):
                self.skipped_near_copy += 1
                continue
            picks.append(Pick(n, reason, priority, 1.0, signature))
        return picks

    def _near(self, signature: int, seen: np.ndarray, picks: list[Pick]) -> bool:
        limit = self.s.max_hamming
        if self.s.diversity_window == 0:
            return False
        if any((signature ^ p.signature).bit_count() <= limit for p in picks):
            return True
        if seen.size == 0:
            return False
        distance = np.bitwise_count(seen ^ np.uint64(signature))
        return bool((distance <= limit).any())

    def taken(self, picks: Sequence[Pick]) -> None:
        """The picks were committed: spend their budget and remember their signatures."""
        now = self.clock()
        refilled = self.tokens + max(0.0, now - self.refilled_at) * self.rate
        self.tokens = max(0.0, min(self.capacity, refilled) - len(picks))
        self.refilled_at = now
        if self.s.diversity_window:
            self.recent.extend(p.signature for p in picks)


def review_value(pick: Pick, result_value: bytes) -> bytes:
    """The ReviewItem JSON, built around the routed result's bytes without parsing them."""
    head = b'{"schema_version":1,"review":' + orjson.dumps(pick.review())
    return head + b',"result":' + result_value + b"}"
