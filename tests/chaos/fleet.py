"""Worker replicas for a chaos scenario: start, kill, stop, restart, and watch them die.

Each replica is a slot with a fixed ``transactional.id`` (like a StatefulSet pod), so a
restarted process fences its killed predecessor and aborts its open transaction at once
instead of after ``transaction.timeout.ms``. Processes come from the integration
harness's ``start_worker``; peak RSS is VmHWM, sampled while each runs and just before
every signal this fleet sends.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.observe import FaultLog, RssSampler, reap
from tests.integration.worker.harness import Topics, WorkerProc, start_worker


@dataclass
class Incarnation:
    worker: WorkerProc
    started: float
    ended: float | None = None
    exit_code: int | None = None
    peak_rss_kb: int = 0
    stopped_by: str = ""  # "SIGKILL" / "SIGTERM" when we ended it; "" = it died by itself

    @property
    def pid(self) -> int:
        return self.worker.proc.pid


@dataclass
class Replica:
    name: str
    txn_id: str
    lives: list[Incarnation] = field(default_factory=list)

    @property
    def current(self) -> Incarnation | None:
        return self.lives[-1] if self.lives and self.lives[-1].ended is None else None


class Fleet:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        model: Path,
        log_dir: Path,
        *,
        group: str,
        faults: FaultLog,
        rss: RssSampler,
        module: str = "worker.cli",
        extra_env: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        self.bootstrap, self.topics, self.model, self.log_dir = bootstrap, topics, model, log_dir
        self.group, self.faults, self.rss = group, faults, rss
        self.module, self.extra_env, self.settings = module, extra_env or {}, settings
        self.replicas: dict[str, Replica] = {}
        self.deaths: list[dict[str, Any]] = []  # exits nobody asked for
        self.stuck: dict[str, str] = {}  # replica -> its Python stacks when it hung
        log_dir.mkdir(parents=True, exist_ok=True)

    # -- lifecycle --------------------------------------------------------------------

    def start(self, name: str, txn_id: str | None = None, **overrides: str) -> Incarnation:
        """Start (or restart) replica ``name``; ``txn_id`` only for a new slot."""
        replica = self.replicas.setdefault(name, Replica(name, txn_id or f"{self.group}-{name}"))
        assert replica.current is None, f"{name} is running"
        settings = {**self.settings, **overrides}
        env = {"PYTHONFAULTHANDLER": "1", **self.extra_env}
        worker = start_worker(
            self.bootstrap,
            self.topics,
            self.model,
            self.log_dir,
            group=self.group,
            txn_id=replica.txn_id,
            module=self.module,
            extra_env=env,
            **settings,
        )
        life = Incarnation(worker, time.monotonic())
        replica.lives.append(life)
        self.rss.watch(life.pid)
        self.faults.note("worker-start", f"{name} pid {life.pid}")
        return life

    def wait_ready(self, name: str, timeout: float = 90) -> bool:
        life = self.replicas[name].current
        if life is None:
            return False
        try:
            life.worker.wait_ready(timeout)
        except AssertionError as exc:
            print(f"  {name} not ready: {str(exc).splitlines()[0]}", flush=True)
            self.poll()
            return False
        return True

    def ready_now(self, name: str) -> bool:
        life = self.replicas[name].current
        return life is not None and life.worker.ready()

    def kill(self, name: str) -> None:
        """SIGKILL, reap; a fault."""
        life = self.replicas[name].current
        if life is None:
            return
        self.rss.sample(life.pid)
        life.stopped_by = "SIGKILL"
        self.faults.add("worker-kill", f"{name} pid {life.pid}")
        with contextlib.suppress(ProcessLookupError):
            life.worker.proc.send_signal(signal.SIGKILL)
        self._wait(life, 10)

    def sigterm(self, name: str, timeout: float) -> tuple[int | None, float]:
        """SIGTERM and wait; (exit code or None when it outlived timeout, seconds taken)."""
        life = self.replicas[name].current
        if life is None:
            return None, 0.0
        self.rss.sample(life.pid)
        life.stopped_by = "SIGTERM"
        fault = self.faults.add("worker-sigterm", f"{name} pid {life.pid}")
        with contextlib.suppress(ProcessLookupError):
            life.worker.proc.send_signal(signal.SIGTERM)
        code = self._wait(life, timeout)
        return code, time.monotonic() - fault.at

    def stop_all(self, grace_s: float = 30) -> dict[str, int | None]:
        """SIGTERM every running replica, then SIGKILL what outlives grace_s."""
        codes: dict[str, int | None] = {}
        running = [(n, r.current) for n, r in self.replicas.items() if r.current is not None]
        for _, life in running:
            assert life is not None
            self.rss.sample(life.pid)
            life.stopped_by = "SIGTERM"
            with contextlib.suppress(ProcessLookupError):
                life.worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, life in running:
            assert life is not None
            codes[name] = self._wait(life, max(0.1, deadline - time.monotonic()))
            if codes[name] is None:
                self.stuck[name] = self.dump_stack(life)
                self.faults.note("worker-stuck", f"{name} pid {life.pid} outlived SIGTERM")
                life.stopped_by = "SIGKILL"
                with contextlib.suppress(ProcessLookupError):
                    life.worker.proc.send_signal(signal.SIGKILL)
                self._wait(life, 10)
        return codes

    def kill_all(self) -> None:
        """The last resort of cleanup: nothing this fleet started outlives it."""
        for replica in self.replicas.values():
            life = replica.current
            if life is not None:
                life.stopped_by = life.stopped_by or "SIGKILL"
                with contextlib.suppress(ProcessLookupError):
                    life.worker.proc.send_signal(signal.SIGKILL)
                self._wait(life, 10)

    # -- watching ---------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Reap replicas that exited on their own; their names (each is a recorded death)."""
        died = []
        for name, replica in self.replicas.items():
            life = replica.current
            if life is not None and self._finished(life):
                died.append(name)
        return died

    def running(self) -> list[str]:
        self.poll()
        return [n for n, r in self.replicas.items() if r.current is not None]

    def _wait(self, life: Incarnation, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while not self._finished(life):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return life.exit_code

    def _finished(self, life: Incarnation) -> bool:
        if life.ended is not None:
            return True
        proc = life.worker.proc
        if proc.returncode is not None:  # reaped by Popen (harness wait_ready polls it)
            code: int | None = proc.returncode
        else:
            self.rss.sample(life.pid)  # the last VmHWM before it is reaped
            code = reap(proc.pid)
            if code is None:
                return False
            proc.returncode = code  # Popen must not wait for it again
        life.ended, life.exit_code = time.monotonic(), code
        life.peak_rss_kb = max(life.peak_rss_kb, self.rss.peak_kb.get(life.pid, 0))
        self.rss.forget(life.pid)
        if not life.stopped_by:
            name = next(n for n, r in self.replicas.items() if life in r.lives)
            self.deaths.append(
                {
                    "replica": name,
                    "pid": life.pid,
                    "exit_code": code,
                    "log": str(life.worker.log_path),
                    "tail": life.worker.tail(25),
                }
            )
            self.faults.add("worker-died", f"{name} pid {life.pid} exit {code}")
        return True

    def dump_stack(self, life: Incarnation) -> str:
        """The Python stacks of a live worker (py-spy, from the dev extra), for the report."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            return "(py-spy not installed)"
        try:
            out = subprocess.run(
                [str(spy), "dump", "--pid", str(life.pid)],
                text=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(py-spy failed: {exc})"
        return (out.stdout + out.stderr)[-6000:]

    def dump_running(self) -> dict[str, str]:
        """Stacks of every running replica (when a scenario times out waiting for them)."""
        return {
            n: self.dump_stack(r.current) for n, r in self.replicas.items() if r.current is not None
        }

    # -- reporting --------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        replicas = {}
        for name, replica in self.replicas.items():
            replicas[name] = {
                "incarnations": len(replica.lives),
                "peak_rss_mib": round(
                    max((x.peak_rss_kb for x in replica.lives), default=0) / 1024, 1
                ),
                "lives": [
                    {
                        "pid": x.pid,
                        "exit_code": x.exit_code,
                        "stopped_by": x.stopped_by,
                        "seconds": round((x.ended or time.monotonic()) - x.started, 1),
                        "peak_rss_mib": round(x.peak_rss_kb / 1024, 1),
                        "log": str(x.worker.log_path),
                    }
                    for x in replica.lives
                ],
            }
        return {"replicas": replicas, "deaths": self.deaths, "stuck": self.stuck}

    def log_tails(self, n: int = 15) -> dict[str, str]:
        return {
            f"{name}#{i}": life.worker.tail(n)
            for name, r in self.replicas.items()
            for i, life in enumerate(r.lives)
        }
