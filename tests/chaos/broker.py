"""The chaos run's own broker: a separate local-kafka instance it may kill and freeze.

``deploy/local-kafka/kafka`` with LOCAL_KAFKA_STATE=.kafka-chaos on a free port, so
neither the `make test` broker nor a user's `make demo` broker is touched. Scenario 2
SIGKILLs it and brings it back with ``kafka relaunch`` on the same data dir and port,
and SIGSTOPs/SIGCONTs it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import KAFKA_TOOL, REPO

DEFAULT_STATE = REPO / ".kafka-chaos"


def free_port_pair() -> int:
    """A port p with p + 1 free too (the tool binds the controller there)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65535 and _free(port + 1):
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def kafka_tool(args: tuple[str, ...], state: Path, timeout: float, **env: str) -> str:
    """``deploy/local-kafka/kafka ARGS`` on the state dir ``state``; its stdout.

    Never the caller's KAFKA_BOOTSTRAP_SERVERS: the tool would reuse that broker.
    """
    full = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    full.update(LOCAL_KAFKA_STATE=str(state), **env)
    out = subprocess.run(
        [sys.executable, str(KAFKA_TOOL), *args],
        env=full,
        text=True,
        stdout=subprocess.PIPE,
        timeout=timeout,
        check=True,
    )
    return out.stdout.strip()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ChaosBroker:
    def __init__(self, state: Path = DEFAULT_STATE, port: int | None = None) -> None:
        self.state = state
        self.port = port or free_port_pair()
        self.addr = ""
        self.frozen = False
        self.label = "broker"  # what a fault summary calls the target
        self.scope_note = ""  # what a scenario's description adds about the target

    def _tool(self, *args: str, timeout: float = 180) -> str:
        return kafka_tool(args, self.state, timeout, LOCAL_KAFKA_PORT=str(self.port))

    def up(self) -> str:
        self.addr = self._tool("up")
        return self.addr

    def pid(self) -> int:
        return int((self.state / "broker.pid").read_text().strip())

    def what(self) -> str:
        """The target of a fault, for the fault log."""
        return f"pid {self.pid()}"

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, the log recovers on the next start."""
        pid = self.pid()
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # not our child (the tool started it): init reaps it

    def relaunch(self) -> str:
        self.addr = self._tool("relaunch")
        return self.addr

    def freeze(self) -> None:
        os.killpg(self.pid(), signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.killpg(self.pid(), signal.SIGCONT)
        self.frozen = False

    def down(self) -> None:
        if self.frozen:
            with contextlib.suppress(OSError, ValueError):
                self.thaw()
        self._tool("down", timeout=90)
