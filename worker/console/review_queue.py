"""The review queue: routed results waiting for an agent's labels, highest priority first.
Pure; one thread uses it.

Bounded: beyond ``max_items`` the oldest arrival is dropped (a message queued long ago
whose conversation is over teaches less than today's). An answered message leaves the
queue, and its id is remembered (bounded too), because the feedback topic and the review
topic are read side by side: a correction can be read before the item it answers.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

MAX_ITEMS: Final = 5_000
MAX_ANSWERED: Final = 100_000


@dataclass(frozen=True)
class Queued:
    """What the server keeps of a review item: what a correction takes from it, and the
    page's view of it (``views.review_item``)."""

    message_id: str
    model_version: str
    reason: str  # schemas.learning.ReviewReason
    priority: float
    view: dict[str, Any] = field(compare=False)


class ReviewQueue:
    def __init__(self, max_items: int = MAX_ITEMS, max_answered: int = MAX_ANSWERED) -> None:
        self.max_items = max_items
        self.max_answered = max_answered
        self._items: OrderedDict[str, tuple[Queued, tuple[float, int]]] = OrderedDict()
        self._order: list[tuple[float, int, str]] = []  # (-priority, arrival, id), sorted
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._arrivals = 0
        self.dropped = 0  # items pushed out by the bound, never answered here
        self.revision = 0  # changes with every change of the queue: the page skips a redraw

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._items

    def add(self, item: Queued) -> bool:
        """Queues ``item`` (in place of an earlier one for the same message); False, and
        nothing changes, when the message was answered already."""
        if item.message_id in self._answered:
            return False
        self._remove(item.message_id)
        self._arrivals += 1
        key = (-item.priority, self._arrivals)
        self._items[item.message_id] = (item, key)
        bisect.insort(self._order, (*key, item.message_id))
        while len(self._items) > self.max_items:
            oldest = next(iter(self._items))
            self._remove(oldest)
            self.dropped += 1
        self.revision += 1
        return True

    def answer(self, message_id: str) -> Queued | None:
        """Takes the message out for good (whoever answered it); the item, if it was queued."""
        self._answered[message_id] = None
        self._answered.move_to_end(message_id)
        while len(self._answered) > self.max_answered:
            self._answered.popitem(last=False)
        item = self._remove(message_id)
        if item is not None:
            self.revision += 1
        return item

    def answered(self, message_id: str) -> bool:
        return message_id in self._answered

    def get(self, message_id: str) -> Queued | None:
        entry = self._items.get(message_id)
        return None if entry is None else entry[0]

    def top(self, limit: int) -> list[Queued]:
        """The first ``limit`` items: priority descending, then the earlier arrival."""
        return [self._items[mid][0] for _, _, mid in self._order[:limit]]

    def _remove(self, message_id: str) -> Queued | None:
        entry = self._items.pop(message_id, None)
        if entry is None:
            return None
        item, key = entry
        i = bisect.bisect_left(self._order, (*key, message_id))
        del self._order[i]
        return item
