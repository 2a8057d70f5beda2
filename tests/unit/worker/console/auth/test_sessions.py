from __future__ import annotations

from worker.console.auth.roles import Role
from worker.console.auth.sessions import Sessions

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_found_by_its_cookie_and_ends_at_logout() -> None:
    s = Sessions(KEY, Clock())
    cookie = s.start("ana", Role.AGENT)
    found = s.find(cookie)
    assert found is not None and (found[1].user, found[1].role) == ("ana", Role.AGENT)
    assert s.end(cookie) is not None
    assert s.find(cookie) is None


def test_a_cookie_not_signed_by_this_key_is_unknown() -> None:
    cookie = Sessions(b"x" * 32, Clock()).start("ana", Role.OPERATOR)
    s = Sessions(KEY, Clock())
    assert s.find(cookie) is None
    token, _ = s.start("ana", Role.VIEWER).split(".")
    assert s.find(f"{token}.forged") is None
    assert s.find(token) is None and s.find("") is None and s.find(None) is None


def test_an_idle_session_and_an_old_one_expire() -> None:
    clock = Clock()
    s = Sessions(KEY, clock, idle_s=60, lifetime_s=150)
    cookie = s.start("ana", Role.AGENT)
    for _ in range(2):  # each use restarts the idle clock
        clock.now += 59
        assert s.find(cookie) is not None
    clock.now += 59  # 177 s old: past the lifetime, though never idle for a minute
    assert s.find(cookie) is None
    idle = s.start("bo", Role.AGENT)
    clock.now += 61
    assert s.find(idle) is None


def test_every_login_gets_a_new_token_and_the_store_is_bounded() -> None:
    s = Sessions(KEY, Clock(), max_sessions=2)
    first, second, third = (s.start("ana", Role.AGENT) for _ in range(3))
    assert len({first, second, third}) == 3
    assert s.find(first) is None  # the oldest went first
    assert s.find(second) is not None and s.find(third) is not None


def test_the_csrf_token_is_bound_to_its_session_and_is_no_cookie_signature() -> None:
    s = Sessions(KEY, Clock())
    token, signature = s.start("ana", Role.AGENT).split(".")
    csrf = s.csrf(token)
    assert s.csrf_ok(token, csrf)
    assert not s.csrf_ok(token, None) and not s.csrf_ok(token, "")
    assert not s.csrf_ok("another-session", csrf)
    assert csrf != signature
