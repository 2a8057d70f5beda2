from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from schemas.learning import AGENT_ID_PATTERN
from worker.console.agents import Pseudonyms
from worker.errors import ConfigError

KEY = b"0123456789abcdef-secret"


def test_with_a_key_a_name_becomes_its_keyed_hash() -> None:
    p = Pseudonyms(KEY)
    agent = p.agent_id("ana")
    digest = hmac.new(KEY, b"ana", hashlib.sha256).hexdigest()
    assert agent == "a-" + digest[:20]
    assert re.fullmatch(AGENT_ID_PATTERN, agent)
    assert p.agent_id("  Ana ") == agent  # one person, one id
    assert p.agent_id("Ana Lopez") != agent
    assert Pseudonyms(KEY + b"x").agent_id("ana") != agent
    assert p.agent_id("José García <jose@example.com>").startswith("a-")


def test_without_a_key_only_an_opaque_id_is_taken_as_it_is() -> None:
    p = Pseudonyms(None)
    assert not p.keyed
    assert p.agent_id("agent-7") == "agent-7"
    assert p.agent_id(" desk:42 ") == "desk:42"
    for name in ("Ana Lopez", "ana@example.com", "ü"):
        with pytest.raises(ValueError, match="opaque id"):
            p.agent_id(name)


@pytest.mark.parametrize("name", ["", "   ", "x" * 129])
def test_an_empty_or_overlong_name_is_refused(name: str) -> None:
    for p in (Pseudonyms(KEY), Pseudonyms(None)):
        with pytest.raises(ValueError, match="agent"):
            p.agent_id(name)


def test_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    path.write_bytes(KEY + b"\n")
    assert Pseudonyms.from_file(path).agent_id("ana") == Pseudonyms(KEY).agent_id("ana")
    assert not Pseudonyms.from_file(None).keyed
    path.write_bytes(b"short\n")
    with pytest.raises(ConfigError, match=r"--agent-key-file .* holds 5 bytes"):
        Pseudonyms.from_file(path)
    with pytest.raises(ConfigError, match="--agent-key-file"):
        Pseudonyms.from_file(tmp_path / "missing.key")
