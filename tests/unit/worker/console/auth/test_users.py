from __future__ import annotations

from pathlib import Path

import pytest

from worker.console.auth.roles import Role
from worker.console.auth.users import Users, hash_line
from worker.errors import ConfigError


def test_a_password_is_checked_against_its_argon2_hash(tmp_path: Path) -> None:
    line = hash_line("ana", Role.AGENT, "s3cret pass")
    assert line.startswith("ana:agent:$argon2id$") and "s3cret" not in line
    path = tmp_path / "users"
    path.write_text(f"# comment\n\n{line}\n{hash_line('bo', Role.VIEWER, 'other')}\n")
    users = Users.from_file(path)
    user = users.verify("ana", "s3cret pass")
    assert user is not None and (user.name, user.role) == ("ana", Role.AGENT)
    assert users.verify("ana", "other") is None
    assert users.verify("nobody", "s3cret pass") is None
    assert users.verify("ana", "x" * 5000) is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("ana:agent:plaintext", "not an argon2 hash"),
        ("ana:admin:$argon2id$x", "unknown role"),
        ("a b:agent:$argon2id$x", "valid name"),
        ("", "names no user"),
    ],
)
def test_a_bad_users_file_stops_the_console_naming_the_line(
    tmp_path: Path, line: str, error: str
) -> None:
    path = tmp_path / "users"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=error) as info:
        Users.from_file(path)
    assert "$argon2" not in str(info.value)


def test_a_name_given_twice_is_refused(tmp_path: Path) -> None:
    line = hash_line("ana", Role.AGENT, "pw")
    path = tmp_path / "users"
    path.write_text(f"{line}\n{line}\n")
    with pytest.raises(ConfigError, match="line 2: ana is given twice"):
        Users.from_file(path)


def test_hash_line_refuses_what_cannot_be_a_user() -> None:
    for name, password in (("a:b", "pw"), ("ana", ""), ("", "pw")):
        with pytest.raises(ValueError):
            hash_line(name, Role.VIEWER, password)
