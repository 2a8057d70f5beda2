"""Identity from an OIDC proxy (oauth2-proxy): its ``X-Forwarded-User``,
``X-Forwarded-Email`` and ``X-Forwarded-Groups`` headers, believed only when the
connection comes from a configured proxy address (anyone else could send them).

The roles come from a TOML mapping file, mounted like a ConfigMap::

    [users]            # a user name or an e-mail address -> a role
    "ana@example.com" = "agent"
    [groups]           # an OIDC group (X-Forwarded-Groups) -> a role
    "support-agents" = "agent"
    "sre" = "operator"

A user gets the highest role that any of their names or groups maps to; none: no role,
and every request is refused (403).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from worker.console.auth.roles import Identity, Role
from worker.errors import ConfigError

USER_HEADER: Final = "x-forwarded-user"
EMAIL_HEADER: Final = "x-forwarded-email"
GROUPS_HEADER: Final = "x-forwarded-groups"
IDENTITY_HEADERS: Final = (USER_HEADER, EMAIL_HEADER, GROUPS_HEADER)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(addresses: Iterable[str]) -> tuple[Network, ...]:
    """``--trusted-proxy`` values: addresses or CIDR blocks; ConfigError naming a bad one."""
    out = []
    for a in addresses:
        try:
            out.append(ipaddress.ip_network(a.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"--trusted-proxy {a!r}: {exc}") from exc
    return tuple(out)


def trusted(peer: str | None, proxies: tuple[Network, ...]) -> bool:
    """Whether the connection's peer address is one of the proxies'."""
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in proxies)


@dataclass(frozen=True)
class RoleMap:
    users: Mapping[str, Role]
    groups: Mapping[str, Role]

    @classmethod
    def from_file(cls, path: Path) -> RoleMap:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"--proxy-roles-file {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--proxy-roles-file {path}: {exc}") from exc
        unknown = set(data) - {"users", "groups"}
        if unknown:
            raise ConfigError(f"--proxy-roles-file {path}: unknown tables {sorted(unknown)}")
        tables: dict[str, dict[str, Role]] = {}
        for table in ("users", "groups"):
            tables[table] = {}
            for name, role in data.get(table, {}).items():
                try:
                    tables[table][name.casefold()] = Role.parse(str(role))
                except ValueError as exc:
                    raise ConfigError(f"--proxy-roles-file {path} [{table}] {name}: {exc}") from exc
        if not tables["users"] and not tables["groups"]:
            raise ConfigError(f"--proxy-roles-file {path} gives nobody a role")
        return cls(tables["users"], tables["groups"])

    def identity(self, user: str, email: str, groups: str) -> Identity | None:
        """The identity the proxy vouches for; None when no name or group has a role."""
        names = [n.strip().casefold() for n in (user, email) if n.strip()]
        roles = [self.users[n] for n in names if n in self.users]
        roles += [
            self.groups[g.strip().casefold()]
            for g in groups.split(",")
            if g.strip().casefold() in self.groups
        ]
        if not roles or not names:
            return None
        # The e-mail when there is one: oauth2-proxy's user can be an opaque subject id.
        return Identity(email.strip() or user.strip(), max(roles), "proxy")
