"""What the loop reports about itself: its heartbeat and readiness (served on /healthz
and /readyz by ``worker.runtime.http_server``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Health:
    """What /healthz and /readyz report; the worker loop updates it."""

    stale_after_s: float
    heartbeat: float = field(default_factory=time.monotonic)
    model_ready: bool = False
    transactions_ready: bool = False
    subscribed: bool = False

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def live(self) -> bool:
        return time.monotonic() - self.heartbeat < self.stale_after_s

    def ready(self) -> bool:
        return self.model_ready and self.transactions_ready and self.subscribed and self.live()

    def describe(self) -> str:
        return (
            f"model_ready={self.model_ready} transactions_ready={self.transactions_ready} "
            f"subscribed={self.subscribed} heartbeat_age_s={time.monotonic() - self.heartbeat:.1f}"
        )
