"""How often the agents' labels agree with the model's, per model version and head, and per
time bucket. Pure; one thread uses it.

A correction (``Feedback``) is joined with the review item it answers (``ReviewItem``: the
model's labels, its version, the item's weight), whichever of the two is read first. Each
head the agent labelled is one observation: agree or not. A later correction of the same
message replaces the earlier one (the latest wins, as when the trainer collects them), so
its observations are taken back out of the counts before the new ones go in. The bucket is
the hour (``bucket_s``) of the correction's ``at``.

Besides the plain rate over what the agents labelled, each count carries the items'
``review.weight`` (how many routed messages one queued message stands for: 1/share for
the random sample): the weighted rate estimates the agreement on all traffic, where the
plain one leans to the hard cases the queue puts first.

Memory is bounded: the model's labels of at most ``max_items`` messages, corrections still
waiting for their item, the latest observation of ``max_observed`` messages (one evicted
from there stays counted; it can no longer be replaced), and ``max_buckets`` buckets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from schemas.labels import HEADS

MAX_ITEMS: Final = 100_000
MAX_PENDING: Final = 10_000
MAX_OBSERVED: Final = 100_000
MAX_BUCKETS: Final = 24 * 31  # (bucket, version) counts kept; the oldest go first
MAX_TREND: Final = 48  # (bucket, version) rows in a report
HEAD_NAMES: Final = tuple(HEADS)
# A label the model cannot give (from an item of another label set) counts as disagreeing;
# interned so that 100k remembered items share their label strings.
_LABELS: Final = {label: label for labels in HEADS.values() for label in labels}


@dataclass
class Tally:
    agree: int = 0
    n: int = 0
    agree_w: float = 0.0
    n_w: float = 0.0

    def add(self, agree: bool, weight: float, sign: int) -> None:
        self.agree += sign * agree
        self.n += sign
        self.agree_w += sign * weight * agree
        self.n_w += sign * weight

    def report(self) -> dict[str, Any]:
        return {
            "agree": self.agree,
            "n": self.n,
            "rate": self.agree / self.n if self.n else None,
            "weighted_rate": self.agree_w / self.n_w if self.n > 0 and self.n_w > 0 else None,
        }


@dataclass(frozen=True, slots=True)  # up to max_items of them
class _Item:
    version: str
    weight: float
    labels: tuple[str | None, ...]  # per HEAD_NAMES; None: the model gave none


@dataclass(frozen=True, slots=True)  # up to max_observed of them
class _Observation:
    version: str
    bucket: int
    weight: float
    agree: tuple[tuple[int, bool], ...]  # (head index, agree) per labelled head


@dataclass
class _Counts:
    messages: int = 0
    heads: tuple[Tally, ...] = ()

    def __post_init__(self) -> None:
        if not self.heads:
            self.heads = tuple(Tally() for _ in HEAD_NAMES)

    def report(self) -> dict[str, Any]:
        return {
            "n": self.messages,
            "heads": {h: t.report() for h, t in zip(HEAD_NAMES, self.heads, strict=True)},
        }


class Agreement:
    def __init__(
        self,
        bucket_s: int = 3600,
        *,
        max_items: int = MAX_ITEMS,
        max_pending: int = MAX_PENDING,
        max_observed: int = MAX_OBSERVED,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.bucket_s = bucket_s
        self.max_buckets = max_buckets
        self.max_items = max_items
        self.max_pending = max_pending
        self.max_observed = max_observed
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._pending: OrderedDict[str, tuple[dict[str, str], float]] = OrderedDict()
        self._observed: OrderedDict[str, _Observation] = OrderedDict()
        self._by_version: dict[str, _Counts] = {}
        self._by_bucket: dict[tuple[int, str], _Counts] = {}
        self._last_seen: dict[str, float] = {}  # version -> latest correction's at (s)
        self.unmatched = 0  # corrections evicted before their item came

    def on_item(
        self,
        message_id: str,
        version: str,
        labels: Mapping[str, str] | None,
        weight: float = 1.0,
    ) -> None:
        """The model's labels for a queued message (None: it gave none, so a correction of
        it has nothing to agree with); joins a correction that was read first."""
        labels = labels or {}
        item = _Item(
            version,
            weight,
            tuple(_LABELS.get(labels[h], labels[h]) if h in labels else None for h in HEAD_NAMES),
        )
        self._items[message_id] = item
        self._items.move_to_end(message_id)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        pending = self._pending.pop(message_id, None)
        if pending is not None:
            self._observe(message_id, item, *pending)

    def on_feedback(self, message_id: str, labels: Mapping[str, str], at_s: float) -> None:
        """An agent's labels for a message (the heads it gave), submitted at ``at_s``."""
        item = self._items.get(message_id)
        if item is not None:
            self._observe(message_id, item, dict(labels), at_s)
            return
        self._pending[message_id] = (dict(labels), at_s)
        self._pending.move_to_end(message_id)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.unmatched += 1

    def report(self, max_trend: int = MAX_TREND) -> dict[str, Any]:
        """Per version (latest correction first) and per (bucket, version), newest first."""
        versions = sorted(self._by_version, key=lambda v: -self._last_seen.get(v, 0.0))
        trend = sorted(self._by_bucket, key=lambda bv: (-bv[0], bv[1]))[:max_trend]
        return {
            "bucket_s": self.bucket_s,
            "heads": list(HEAD_NAMES),
            "versions": [
                {"version": v, **self._by_version[v].report()}
                for v in versions
                if self._by_version[v].messages > 0
            ],
            "trend": [
                {"start_s": b, "version": v, **self._by_bucket[(b, v)].report()}
                for b, v in trend
                if self._by_bucket[(b, v)].messages > 0
            ],
            "waiting": len(self._pending),
            "unmatched": self.unmatched,
        }

    def _observe(
        self, message_id: str, item: _Item, labels: Mapping[str, str], at_s: float
    ) -> None:
        agree = tuple(
            (i, labels[h] == item.labels[i])
            for i, h in enumerate(HEAD_NAMES)
            if h in labels and item.labels[i] is not None
        )
        old = self._observed.pop(message_id, None)
        if old is not None:
            self._count(old, -1)
        if not agree:  # no head both labelled and predicted: nothing to count
            return
        bucket = int(at_s // self.bucket_s * self.bucket_s)
        new = _Observation(item.version, bucket, item.weight, agree)
        self._observed[message_id] = new
        while len(self._observed) > self.max_observed:
            self._observed.popitem(last=False)
        self._count(new, +1)
        self._last_seen[item.version] = max(self._last_seen.get(item.version, at_s), at_s)

    def _count(self, obs: _Observation, sign: int) -> None:
        for counts in self._counts_of(obs, create=sign > 0):
            counts.messages += sign
            for i, agree in obs.agree:
                counts.heads[i].add(agree, obs.weight, sign)

    def _counts_of(self, obs: _Observation, create: bool) -> Iterable[_Counts]:
        """The version's counts and the bucket's; a bucket dropped by the bound is not
        brought back to take a replaced observation out."""
        yield self._by_version.setdefault(obs.version, _Counts())
        key = (obs.bucket, obs.version)
        if key in self._by_bucket:
            yield self._by_bucket[key]
        elif create:
            self._by_bucket[key] = counts = _Counts()
            if len(self._by_bucket) > self.max_buckets:
                del self._by_bucket[min(self._by_bucket)]
            yield counts
