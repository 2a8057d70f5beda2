from __future__ import annotations

from pathlib import Path

import pytest

from worker.console.auth import proxy
from worker.console.auth.roles import Role
from worker.errors import ConfigError


def test_only_a_configured_proxy_address_is_trusted() -> None:
    nets = proxy.networks(["127.0.0.1", "10.1.0.0/16", "::1"])
    assert proxy.trusted("127.0.0.1", nets) and proxy.trusted("10.1.9.9", nets)
    assert proxy.trusted("::1", nets)
    for peer in ("127.0.0.2", "10.2.0.1", "192.0.2.1", None, "not-an-address"):
        assert not proxy.trusted(peer, nets), peer
    with pytest.raises(ConfigError, match="--trusted-proxy"):
        proxy.networks(["10.0.0.300"])


def test_the_highest_role_of_a_user_s_names_and_groups_wins(tmp_path: Path) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(
        '[users]\n"Ana@Example.com" = "agent"\n"bo" = "viewer"\n[groups]\n"sre" = "operator"\n'
    )
    roles = proxy.RoleMap.from_file(path)
    ana = roles.identity("8731", "ana@example.com", "")
    assert ana is not None and (ana.user, ana.role, ana.via) == (
        "ana@example.com",
        Role.AGENT,
        "proxy",
    )
    bo = roles.identity("bo", "", "staff, sre")
    assert bo is not None and (bo.user, bo.role) == ("bo", Role.OPERATOR)
    assert roles.identity("eve", "eve@example.com", "staff") is None
    assert roles.identity("", "", "sre") is None  # a group alone names nobody


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[users]\n"a" = "admin"\n', "unknown role"),
        ("[people]\n", "unknown tables"),
        ("", "gives nobody a role"),
        ("[users\n", "roles.toml"),
    ],
)
def test_a_bad_mapping_stops_the_console(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        proxy.RoleMap.from_file(path)
