"""A ``support-worker console`` process started from the checkout: for the demo, the
console's integration and browser tests, and the screenshot (tools/console_shot.py).

It binds port 0 unless told otherwise and announces its URL in its log
(``console_listening``); ``wait_ready`` reads it and waits for ``/healthz``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import REPO


def start(
    env: Mapping[str, str],
    log_path: Path,
    *,
    port: int = 0,
    args: Sequence[str] = (),
) -> ConsoleProc:
    """``python -m worker.cli console`` with ``env`` (Kafka, topics and group as the
    workers', e.g. tools.worker_proc.worker_env) and extra ``args``."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "console", "--port", str(port), *args],
            cwd=REPO,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches its parent only
        )
    return ConsoleProc(proc, log_path)


@dataclass
class ConsoleProc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    started: float = field(default_factory=time.monotonic)

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout: float = 60) -> str:
        """The console's URL, once /healthz says it reads Kafka."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the console exited {self.proc.returncode}:\n{self.tail()}")
            if not self.url:
                self.url = self._announced()
            if self.url and self.get("healthz")[0] == 200:
                return self.url
            time.sleep(0.2)
        raise RuntimeError(f"the console was not ready in {timeout} s:\n{self.tail()}")

    def _announced(self) -> str:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"console_listening"' in line:
                with contextlib.suppress(json.JSONDecodeError):
                    return str(json.loads(line)["url"])
        return ""

    def get(self, path: str) -> tuple[int, Any]:
        return self._call(urllib.request.Request(self.url + path))

    def try_message(self, text: str, timeout: float = 30) -> tuple[int, Any]:
        """POST /api/try as the page does; (status, JSON body)."""
        req = urllib.request.Request(
            self.url + "api/try",
            data=json.dumps({"text": text}).encode(),
            headers={"Content-Type": "application/json"},
        )
        return self._call(req, timeout)

    def _call(self, req: urllib.request.Request, timeout: float = 5) -> tuple[int, Any]:
        return call(req, timeout)[:2]

    def login(self, user: str, password: str) -> tuple[int, Any, Client | None]:
        """POST /api/login as the page does: (status, body, the logged-in client or None)."""
        req = urllib.request.Request(
            self.url + "api/login",
            data=json.dumps({"user": user, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        status, body, headers = call(req, 30)
        if status != 200:
            return status, body, None
        cookie = headers.get("set-cookie", "").split(";")[0]
        return status, body, Client(self, cookie, str(body["csrf"]))

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError(
                f"the console ignored SIGTERM for {timeout} s:\n{self.tail()}"
            ) from exc


@dataclass
class Client:
    """A logged-in user of a console: its session cookie (``name=value``) and CSRF token."""

    console: ConsoleProc
    cookie: str
    csrf: str

    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie}

    def get(self, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(self.console.url + path, headers=self.headers())
        return call(req)[:2]

    def post(
        self, path: str, body: Any, headers: Mapping[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, Any]:
        """A JSON POST with the session's cookie and CSRF token (``headers`` override)."""
        sent = {**self.headers(), "Content-Type": "application/json", "X-CSRF-Token": self.csrf}
        req = urllib.request.Request(
            self.console.url + path,
            data=body if isinstance(body, bytes) else json.dumps(body).encode(),
            headers={k: v for k, v in {**sent, **(headers or {})}.items() if v},
        )
        return call(req, timeout)[:2]


def call(req: urllib.request.Request, timeout: float = 5) -> tuple[int, Any, Mapping[str, str]]:
    """(status, JSON body, headers); the body None when it is no JSON (the page), status
    0 when nothing answered."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, _json(r.read()), _lower(r.headers.items())
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), _lower(e.headers.items())
    except OSError:
        return 0, None, {}


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


@contextlib.contextmanager
def running(
    env: Mapping[str, str], log_path: Path, *, port: int = 0, args: Sequence[str] = ()
) -> Iterator[ConsoleProc]:
    """A ready console, stopped on the way out however that is (a failed start, Ctrl-C);
    the ``with`` body sees it exit 0 on SIGTERM or fails."""
    proc = start(env, log_path, port=port, args=args)
    try:
        proc.wait_ready()
        yield proc
    finally:
        code = proc.stop()
    if code != 0:
        raise RuntimeError(f"the console exited {code}:\n{proc.tail()}")
