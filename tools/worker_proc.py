"""A ``support-worker run`` process started from the checkout, and what it reports.

The one driver of worker processes for the bench (tools/bench/broker.py) and the tests
(tests/integration/worker/harness.py, and through it tests/chaos/): it starts the worker
with its topics, model, group and transactional.id in the environment and an admin port
of the OS's choosing, reads that port from the log, and answers from ``/readyz`` and
``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import REPO

PREFIX = "SUPPORT_WORKER_"


class WorkerProcError(AssertionError):
    """The worker exited, or was not ready or not done in time; the message has its log.

    An AssertionError, so that in a test it reads as the failed check it is (and
    tests/chaos/fleet.py, which catches AssertionError from ``wait_ready``, keeps working).
    """


def worker_env(
    bootstrap: str,
    topics: Mapping[str, str],
    model: Path,
    *,
    group: str,
    txn_id: str,
    settings: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The worker's environment: this process's, less any ``SUPPORT_WORKER_*``, plus ours.

    ``topics`` maps a role (inbound, escalate, auto_resolve, more_info, dlq) to a topic;
    ``settings`` keys become ``SUPPORT_WORKER_<KEY>`` (``model__threads``); ``extra_env``
    is added as given, last, and so overrides everything.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update({f"{PREFIX}TOPICS__{role.upper()}": name for role, name in topics.items()})
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        SUPPORT_WORKER_MODEL__PATH=str(model),
        SUPPORT_WORKER_GROUP_ID=group,
        SUPPORT_WORKER_TRANSACTIONAL_ID=txn_id,
        SUPPORT_WORKER_ADMIN_PORT="0",  # the OS picks; the worker logs it (admin_listening)
        SUPPORT_WORKER_LOG_LEVEL="info",  # the level that announces the admin port
    )
    env.update({f"{PREFIX}{k.upper()}": v for k, v in (settings or {}).items()})
    env.update(extra_env or {})
    return env


def start(
    bootstrap: str,
    topics: Mapping[str, str],
    model: Path,
    log_path: Path,
    *,
    group: str,
    txn_id: str,
    module: str = "worker.cli",
    settings: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> WorkerProc:
    """``python -m <module> run`` from the repo root, stdout and stderr into ``log_path``.

    ``module`` swaps the entry point (tests/chaos/faulty_worker.py wraps the worker's);
    ``python`` the interpreter, so a worker can run from another venv (tools.venv_check).
    """
    env = worker_env(
        bootstrap, topics, model, group=group, txn_id=txn_id, settings=settings, extra_env=extra_env
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [python, "-m", module, "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return WorkerProc(proc, log_path)


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_port: int = 0
    started: float = field(default_factory=time.monotonic)

    # -- the log ------------------------------------------------------------------------

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON line of the log so far (anything else, a traceback say, skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def _error(self, what: str) -> WorkerProcError:
        return WorkerProcError(f"worker {what}; log {self.log_path}:\n{self.tail()}")

    # -- the admin port -----------------------------------------------------------------

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        """Status and body of an admin endpoint; (0, "") while nothing answers."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        """/readyz answers 200 now (the admin port is read from the log once it is there)."""
        if not self.admin_port:
            ports = [e["port"] for e in self.log_lines() if e.get("event") == "admin_listening"]
            self.admin_port = ports[0] if ports else 0
        return bool(self.admin_port) and self.get("/readyz", timeout=2)[0] == 200

    def metrics(self, *names: str) -> list[float]:
        """Each named metric summed over its labels, all from one scrape (0 unanswered).

        One scrape, so that a _sum and its _count belong together; and each scrape renders
        every metric, so callers that poll keep to about 10 a second (50 a second took 12%
        of the worker's CPU, which the bench then reported as the worker's own cost).
        """
        _, body = self.get("/metrics")
        lines = body.splitlines()
        return [
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in lines
                if line.startswith((name + " ", name + "{"))
            )
            for name in names
        ]

    def metric(self, name: str) -> float:
        return self.metrics(name)[0]

    def committed(self) -> float:
        """Records committed so far: results and dead letters."""
        return sum(self.metrics("support_messages_out_total", "support_dead_letters_total"))

    # -- waiting --------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise self._error(f"exited {self.proc.returncode}")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.ready():
                return
            time.sleep(0.1)
        raise self._error(f"not ready in {timeout}s")

    def wait_batches(self, n: int, timeout: float = 60) -> None:
        """Until n batches are committed: 'mid-backlog' for the crash and stop tests.

        Returns at the timeout too (the caller checks what it needs).
        """
        deadline = time.monotonic() + timeout
        while self.metric("support_batches_total") < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait_committed(self, n: int, timeout: float = 600) -> tuple[float, float]:
        """How many were committed when the first batch was, and seconds from then to all n.

        The clock starts at the first committed batch: joining the group and the first
        fetch are start-up, not throughput.
        """
        deadline = time.monotonic() + timeout
        first: tuple[float, float] | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            done = self.committed()
            if first is None and done > 0:
                first = (time.monotonic(), done)
            if done >= n and first is not None:
                return first[1], time.monotonic() - first[0]
            time.sleep(0.1)
        raise self._error(f"did not commit {n} messages in {timeout}s")

    # -- ending ---------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the worker drains, commits and exits 0), then its exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL and reap, if it still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
