"""`deploy/local-kafka/kafka` lifecycle, on a second broker in a private state dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KAFKA_TOOL

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) and not os.environ.get("LOCAL_KAFKA_MANAGED"),
    reason="KAFKA_BOOTSTRAP_SERVERS names a user's cluster: start no broker of our own",
)


class Tool:
    def __init__(self, state: Path, port: int) -> None:
        self.state = state
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env.update(LOCAL_KAFKA_STATE=str(state), LOCAL_KAFKA_PORT=str(port))

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(KAFKA_TOOL), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def pid(self) -> int:
        return int((self.state / "broker.pid").read_text())


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def tool(tmp_path: Path, held_port: int) -> Iterator[Tool]:
    t = Tool(tmp_path / "kafka-state", held_port)
    yield t
    t("down")


def test_lifecycle(tool: Tool, held_port: int) -> None:
    first = tool("up")
    assert first.returncode == 0, first.stderr
    addr = first.stdout.strip()
    # stdout is the address alone; the preferred port was taken, so another was picked
    assert first.stdout.count("\n") == 1 and addr.startswith("127.0.0.1:")
    assert addr != f"127.0.0.1:{held_port}"
    assert "is taken; picking free ports" in first.stderr
    assert (tool.state / "logs" / "broker.log").stat().st_size > 0
    pid = tool.pid()

    again = tool("up")
    assert again.stdout.strip() == addr
    assert tool.pid() == pid
    assert "reusing broker" in again.stderr
    assert tool("status").returncode == 0

    # A dead broker behind a live-looking pid file is detected and replaced.
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tool("status").returncode == 3
    replaced = tool("up")
    assert replaced.returncode == 0, replaced.stderr
    assert tool.pid() != pid
    assert "stale pid file" in replaced.stderr

    # A pid file naming some other live process: never signalled, just replaced.
    assert tool("down").returncode == 0
    (tool.state / "broker.pid").write_text(f"{os.getpid()}\n")
    stale = tool("up")
    assert stale.returncode == 0, stale.stderr
    assert "is not a broker of ours" in stale.stderr
    assert tool.pid() != os.getpid()

    assert tool("down").returncode == 0
    assert tool("status").returncode == 3
