"""Standalone sessions: server-side, behind a signed cookie. Pure (a clock is given).

The cookie holds a random token and its HMAC-SHA256 under the session key: a cookie
the server did not issue fails the signature before any lookup. The session itself lives
here, so logout and expiry end it at once (an idle timeout and an absolute lifetime,
OWASP's session guidance), and a restart with a new key ends every session. The CSRF
token is an HMAC of the session token under the same key: the page reads it from
``/api/session`` and sends it in a header with every POST, which a foreign page cannot
read or forge (the synchronizer-token pattern, kept stateless).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from worker.console.auth.roles import Role
from worker.console.keyfile import read_key

MIN_KEY_BYTES: Final = 32
IDLE_S: Final = 30 * 60
LIFETIME_S: Final = 12 * 3600
MAX_SESSIONS: Final = 10_000


def load_key(path: Path | None) -> bytes:
    """The key in ``path`` (whitespace around it left out); a fresh random one without a
    path (then sessions end when the process does)."""
    if path is None:
        return secrets.token_bytes(MIN_KEY_BYTES)
    return read_key(path, "--session-key-file", MIN_KEY_BYTES)


@dataclass
class Session:
    user: str
    role: Role
    started: float
    seen: float


class Sessions:
    def __init__(
        self,
        key: bytes,
        clock: Callable[[], float],
        *,
        idle_s: float = IDLE_S,
        lifetime_s: float = LIFETIME_S,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._key = key
        self.clock = clock
        self.idle_s = idle_s
        self.lifetime_s = lifetime_s
        self.max_sessions = max_sessions
        self._live: OrderedDict[str, Session] = OrderedDict()

    def start(self, user: str, role: Role) -> str:
        """A new session's cookie value. A fresh token at every login: no fixation."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self._live[token] = Session(user, role, now, now)
        while len(self._live) > self.max_sessions:  # the oldest logins go first
            self._live.popitem(last=False)
        return f"{token}.{self._sign(b'session', token)}"

    def find(self, cookie: str | None) -> tuple[str, Session] | None:
        """(token, session) for a valid, live cookie; the session's idle clock restarts."""
        token = self._token(cookie)
        if token is None:
            return None
        session = self._live.get(token)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.idle_s or now - session.started > self.lifetime_s:
            del self._live[token]
            return None
        session.seen = now
        return token, session

    def end(self, cookie: str | None) -> Session | None:
        token = self._token(cookie)
        return None if token is None else self._live.pop(token, None)

    def csrf(self, binding: str) -> str:
        """The CSRF token of a session token (or of a proxy's user: ``proxy:NAME``)."""
        return self._sign(b"csrf", binding)

    def csrf_ok(self, binding: str, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(self.csrf(binding), sent)

    def _token(self, cookie: str | None) -> str | None:
        if not cookie or cookie.count(".") != 1:
            return None
        token, signature = cookie.split(".")
        if not hmac.compare_digest(self._sign(b"session", token), signature):
            return None
        return token

    def _sign(self, purpose: bytes, value: str) -> str:
        # One key, two purposes: the purpose is in the MAC, so a CSRF token is never a
        # valid cookie signature and the other way round.
        mac = hmac.new(self._key, purpose + b"\0" + value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
