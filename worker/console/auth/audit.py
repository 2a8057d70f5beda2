"""The audit trail: structured ``audit`` log lines of who logged in or out, who was shown
which queued message's text, who sent which correction. Ids only: never a text, a
password or a label note. The user is the agent pseudonym when ``--agent-key-file`` is
given (the same id the feedback records carry), else the login name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

import structlog

log = structlog.get_logger("audit")

MAX_SHOWN: Final = 100_000


def audit(action: str, user: str | None, **ids: Any) -> None:
    log.info("audit", action=action, user=user, **ids)


class Shown:
    """Which queued texts each user has been shown already: the review page polls every
    two seconds, and the trail needs one ``review_opened`` line per user and message, not
    one per poll. Bounded; a pair forgotten is logged again, never lost."""

    def __init__(self, max_pairs: int = MAX_SHOWN) -> None:
        self.max_pairs = max_pairs
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def new(self, user: str, message_ids: Iterable[str]) -> list[str]:
        """The ids of ``message_ids`` not shown to ``user`` before; now remembered."""
        out = []
        for mid in message_ids:
            pair = (user, mid)
            if pair in self._pairs:
                self._pairs.move_to_end(pair)
                continue
            self._pairs[pair] = None
            out.append(mid)
        while len(self._pairs) > self.max_pairs:
            self._pairs.popitem(last=False)
        return out
