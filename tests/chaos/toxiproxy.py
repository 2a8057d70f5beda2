"""Toxiproxy between the workers and the brokers: the network faults of `--brokers 3`.

One toxiproxy-server process (built by `make toxiproxy` into .tools/) with one proxy per
broker: it listens where that broker's EXTERNAL listener is advertised and forwards to
that listener (deploy/local-kafka/kafka up --advertise-external). A worker that
bootstraps at the proxies gets the proxies' addresses back in every metadata answer, so
all its traffic to every broker passes through them; replication, the feeder and the
read_committed reader use the brokers' own PLAINTEXT listener and never do.

The server's HTTP API (https://github.com/Shopify/toxiproxy#http-api) is driven with
urllib: a toxic added to a proxy applies to its open connections and to new ones until
it is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import REPO


def server_binary() -> Path | None:
    """$TOXIPROXY_SERVER, else the newest .tools/toxiproxy-*/toxiproxy-server; None if absent."""
    env = os.environ.get("TOXIPROXY_SERVER")
    if env:
        return Path(env) if Path(env).is_file() else None
    found = sorted((REPO / ".tools").glob("toxiproxy-*/toxiproxy-server"))
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Toxiproxy:
    """A toxiproxy-server of this run's own, on a free API port, and its proxies."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self.binary, self.log_path = binary, log_path
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.proxies: dict[str, str] = {}  # name -> listen address
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "-host", "127.0.0.1", "-port", str(self.api_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"toxiproxy-server exited {self.proc.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(OSError):
                self._call("GET", "/version")
                return
            time.sleep(0.1)
        raise RuntimeError(f"toxiproxy-server did not answer within {timeout_s:.0f}s")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"toxiproxy {method} {path}: {exc.code} {exc.read()[:300]!r}"
            ) from None
        return json.loads(text) if text.strip() else None

    def add_proxy(self, name: str, listen: str, upstream: str) -> None:
        self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": listen, "upstream": upstream, "enabled": True},
        )
        self.proxies[name] = listen

    def add_toxic(self, toxic: str, kind: str, stream: str, attributes: dict[str, int]) -> None:
        """The toxic on every proxy; ``stream`` is upstream (to the broker) or downstream."""
        for proxy in self.proxies:
            self._call(
                "POST",
                f"/proxies/{proxy}/toxics",
                {
                    "name": toxic,
                    "type": kind,
                    "stream": stream,
                    "toxicity": 1.0,
                    "attributes": attributes,
                },
            )

    def remove_toxic(self, toxic: str) -> None:
        for proxy in self.proxies:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic}")

    def reset(self) -> None:
        """Every toxic off, every proxy on: the state each scenario starts from."""
        self._call("POST", "/reset")

    def toxics(self) -> dict[str, list[str]]:
        return {
            p: [t["name"] for t in self._call("GET", f"/proxies/{p}/toxics")] for p in self.proxies
        }

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
