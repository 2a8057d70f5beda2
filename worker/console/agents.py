"""An agent's name -> the pseudonymous ``agent_id`` a correction carries. Pure.

The name is the logged-in user's (in the no-login mode, the one the review page sends),
and the server turns it into the id: with a key (``--agent-key-file``) an HMAC-SHA256
keyed hash, ``a-`` and 20 hex digits (80 bits: no collision among any desk's agents),
which nobody without the key can turn back into the name or compute for a guessed one;
without a key, the name itself when it already has the form of an opaque id
(``AGENT_ID_PATTERN``: no spaces, no '@').
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from pathlib import Path
from typing import Final

from schemas.learning import AGENT_ID_PATTERN
from worker.console.keyfile import read_key

MIN_KEY_BYTES: Final = 16
MAX_NAME_CHARS: Final = 128
HASH_HEX_DIGITS: Final = 20
_AGENT_ID: Final = re.compile(AGENT_ID_PATTERN)


class Pseudonyms:
    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise ValueError(f"an agent key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path | None) -> Pseudonyms:
        """The key in ``path`` (worker.console.keyfile); no path, no key."""
        if path is None:
            return cls(None)
        key = read_key(path, "--agent-key-file", MIN_KEY_BYTES)
        return cls(key)

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def agent_id(self, name: str) -> str:
        """The id for ``name``; ValueError, saying why, when there is none."""
        name = name.strip()
        if not name:
            raise ValueError("agent: give your name")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"agent: at most {MAX_NAME_CHARS} characters")
        if self._key is not None:
            # One person typing "Ana" or "ana " is one agent, not two.
            canonical = unicodedata.normalize("NFKC", name).casefold()
            digest = hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()
            return "a-" + digest[:HASH_HEX_DIGITS]
        if _AGENT_ID.fullmatch(name) is None:
            raise ValueError(
                "agent: without --agent-key-file the console records the name as it is, so "
                "it must be an opaque id (letters, digits, '.', '_', ':', '-'; no spaces, "
                "no e-mail address)"
            )
        return name
