"""The standalone login's users file: one ``name:role:argon2-hash`` line per user, ``#``
comments and blank lines allowed (``support-worker console hash-password`` writes a
line). Mounted read-only, like a Secret; the console never writes it.

argon2id (argon2-cffi's defaults: 64 MiB, 3 passes) makes each guess cost the attacker
what it costs the server; ``verify`` spends the same work on an unknown name, so the time
of an answer does not tell which names exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from worker.console.auth.roles import Role
from worker.errors import ConfigError

USER_NAME: Final = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
MAX_PASSWORD_CHARS: Final = 1024  # an argon2 input of megabytes is work for nobody
_HASHER: Final = PasswordHasher()
# Verified when the name is unknown: the same cost as a wrong password for a known name.
_DUMMY: Final = _HASHER.hash("no such user: the same work as a wrong password")


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    hash: str


def hash_line(name: str, role: Role, password: str) -> str:
    """A users-file line for ``name``; ValueError when the name or password cannot be."""
    if USER_NAME.fullmatch(name) is None:
        raise ValueError("a user name: 1-128 letters, digits and . _ @ + -")
    if not password or len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password: 1-{MAX_PASSWORD_CHARS} characters")
    return f"{name}:{role.label}:{_HASHER.hash(password)}"


class Users:
    def __init__(self, users: dict[str, User]) -> None:
        self._users = users

    @classmethod
    def from_file(cls, path: Path) -> Users:
        """ConfigError naming the line when the file cannot be used (never its hash)."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"--users-file {path}: {exc.strerror or exc}") from exc
        users: dict[str, User] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, rest = line.partition(":")
            role_text, _, hashed = rest.partition(":")
            where = f"--users-file {path} line {n}"
            if USER_NAME.fullmatch(name) is None:
                raise ConfigError(f"{where}: expected name:role:hash with a valid name")
            try:
                role = Role.parse(role_text)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            if not hashed.startswith("$argon2"):
                raise ConfigError(f"{where}: not an argon2 hash (use hash-password)")
            if name in users:
                raise ConfigError(f"{where}: {name} is given twice")
            users[name] = User(name, role, hashed)
        if not users:
            raise ConfigError(f"--users-file {path} names no user")
        return cls(users)

    def names(self) -> list[str]:
        return list(self._users)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None. Slow by design (argon2)."""
        user = self._users.get(name)
        if len(password) > MAX_PASSWORD_CHARS:
            return None
        try:
            _HASHER.verify(_DUMMY if user is None else user.hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user
