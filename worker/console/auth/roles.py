"""The console's roles and the identity a request carries. Pure.

The roles are ordered, as Grafana's viewer/editor/admin are: each one may do what the
roles below it may.

- viewer: the live view (rates, routes, lag), never any customer text;
- agent: also the review page, which shows queued texts and sends corrections;
- operator: also try-a-message, and the live text when the console runs with
  ``--show-live-text``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.IntEnum):
    VIEWER = 1
    AGENT = 2
    OPERATOR = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """``viewer``, ``agent`` or ``operator``; ValueError naming them otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role {text!r} (one of {names})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Identity:
    """Who sent a request. ``user`` None: the no-login mode, where nobody logs in."""

    user: str | None
    role: Role
    via: str  # "session", "proxy" or "open"
    session: str | None = None  # the session token (via "session"), for the CSRF token

    def may(self, role: Role) -> bool:
        return self.role >= role
