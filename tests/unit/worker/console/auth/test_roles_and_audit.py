from __future__ import annotations

import pytest

from worker.console.auth.audit import Shown
from worker.console.auth.roles import Identity, Role


def test_roles_are_ordered_each_may_what_those_below_may() -> None:
    agent = Identity("ana", Role.AGENT, "session")
    assert agent.may(Role.VIEWER) and agent.may(Role.AGENT) and not agent.may(Role.OPERATOR)
    assert Role.parse(" Operator ") is Role.OPERATOR
    with pytest.raises(ValueError, match="viewer, agent, operator"):
        Role.parse("admin")


def test_a_text_shown_is_audited_once_per_user() -> None:
    shown = Shown(max_pairs=3)
    assert shown.new("ana", ["m-1", "m-2"]) == ["m-1", "m-2"]
    assert shown.new("ana", ["m-1", "m-2", "m-3"]) == ["m-3"]
    assert shown.new("bo", ["m-1"]) == ["m-1"]  # another user: another line
    assert shown.new("ana", ["m-1"]) == ["m-1"]  # forgotten (bounded): logged again
