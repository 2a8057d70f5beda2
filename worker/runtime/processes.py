"""Several workers on one host: what ``support-worker run`` does with ``processes`` above 1.

One worker decodes, tokenizes and commits on one Python thread while its model runs on
another, so one process cannot keep a large GPU busy; several can, each a member of the
consumer group. Each needs an identity of its own on the host: a transactional.id (two
live producers with one id fence each other), a group.instance.id where static membership
is on (likewise) and an admin port. Process i gets the host's id with ``-<i>`` appended
and ``admin_port + i``, the same on every start of the set, so that a restarted process's
``init_transactions()`` aborts what its predecessor left open, as a restarted pod's does.

The set lives and dies together. A stop signal goes to every process, each drains as a
lone worker does, and the supervisor exits with the first non-zero code among them (0
after clean drains). A process that exits on its own takes the others down (SIGTERM,
SIGKILL past the drain grace) and the supervisor exits with its code, so the pod or the
service manager restarts the whole set.

No torch and no librdkafka here: the supervisor only starts processes and passes signals
(``sigtimedwait``, ``PR_SET_PDEATHSIG``: Linux).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from worker.errors import ConfigError, ExitCode
from worker.runtime.signals import RELOAD_SIGNAL, SIGNALS, STOP_SIGNALS, block_stop_signals
from worker.settings import ENV_PREFIX, WorkerSettings

log = structlog.get_logger("worker")

# How long an exited process may go unnoticed while no signal comes.
POLL_S = 0.2
# A worker ends itself shutdown_grace_s after the signal (worker.runtime.signals); SIGKILL is for
# one that could not, this much later.
KILL_MARGIN_S = 5.0
_PR_SET_PDEATHSIG = 1


def child_env(settings: WorkerSettings, index: int) -> dict[str, str]:
    """The settings process ``index`` gets over the supervisor's environment."""
    port = settings.admin_port
    if port and port + settings.processes - 1 > 65535:
        raise ConfigError(
            f"setting 'admin_port': {port} + {settings.processes} processes passes port 65535 "
            f"({ENV_PREFIX}ADMIN_PORT, {ENV_PREFIX}PROCESSES)"
        )
    env = {
        f"{ENV_PREFIX}PROCESSES": "1",
        f"{ENV_PREFIX}PROCESS_INDEX": str(index),
        f"{ENV_PREFIX}TRANSACTIONAL_ID": f"{settings.transactional_id}-{index}",
        f"{ENV_PREFIX}ADMIN_PORT": str(port + index if port else 0),  # 0: each picks one
    }
    if settings.group_instance_id is not None:
        env[f"{ENV_PREFIX}GROUP_INSTANCE_ID"] = f"{settings.group_instance_id}-{index}"
    return env


def merged_env(base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """``base`` with ``overrides``, dropping any spelling of their names in another case:
    the settings read the environment case-insensitively, and a leftover
    ``support_worker_admin_port`` could win over ours."""
    names = {k.upper() for k in overrides}
    return {**{k: v for k, v in base.items() if k.upper() not in names}, **overrides}


def exit_code(returncode: int) -> int:
    """A child's exit status as a shell reports it: killed by signal N is 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def supervise(settings: WorkerSettings, config: Path | None) -> int:
    """Run ``settings.processes`` workers until a signal or until one exits; the exit code."""
    block_stop_signals()  # taken by sigtimedwait below; the workers inherit the block too
    envs = [child_env(settings, i) for i in range(settings.processes)]
    command = [sys.executable, "-m", "worker.cli", "run"]
    if config is not None:
        command += ["--config", str(config)]
    children: list[subprocess.Popen[bytes]] = []
    try:
        for env in envs:
            children.append(_start(command, merged_env(dict(os.environ), env)))
    except BaseException:
        _stop(children, signal.SIGTERM, settings.shutdown_grace_s)
        raise
    log.info(
        "supervisor_started",
        pids=[c.pid for c in children],
        transactional_ids=[e[f"{ENV_PREFIX}TRANSACTIONAL_ID"] for e in envs],
        admin_ports=[int(e[f"{ENV_PREFIX}ADMIN_PORT"]) for e in envs],
    )
    while True:
        info = signal.sigtimedwait(SIGNALS, POLL_S)
        if info is not None and info.si_signo == RELOAD_SIGNAL:
            for child in children:  # each swaps between its own batches
                child.send_signal(RELOAD_SIGNAL)
            continue
        if info is not None:
            log.info("supervisor_stopping", signal=info.si_signo)
            codes = _stop(children, info.si_signo, settings.shutdown_grace_s)
            code = next((c for c in codes if c != ExitCode.OK), ExitCode.OK)
            break
        exited = next((i for i, c in enumerate(children) if c.poll() is not None), None)
        if exited is not None:
            code = exit_code(children[exited].returncode)
            log.error("process_exited", process=exited, exit_code=code, note="stopping the others")
            codes = _stop(children, signal.SIGTERM, settings.shutdown_grace_s)
            break
    log.info("supervisor_stopped", exit_code=code, exit_codes=codes)
    return code


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A group of its own: a terminal's Ctrl-C reaches the supervisor only, which passes it
    # on once (twice would be the "exit at once" second signal).
    return subprocess.Popen(
        command, env=env, process_group=0, preexec_fn=_die_with_parent(os.getpid())
    )


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """SIGTERM to the worker when the supervisor dies (SIGKILL, OOM), so that no orphan
    keeps the admin port and transactional.id its replacement needs."""
    if sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # died between fork and prctl
            os._exit(ExitCode.FATAL)

    return preexec


def _stop(children: list[subprocess.Popen[bytes]], signum: int, grace_s: float) -> list[int]:
    """Pass ``signum`` to every live child and wait for all of them; their exit codes.
    Another stop signal meanwhile is passed on too (each worker then exits at once);
    whatever still runs past the grace is killed."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signum)
    deadline = time.monotonic() + grace_s + KILL_MARGIN_S
    while any(c.poll() is None for c in children):
        left = deadline - time.monotonic()
        if left <= 0:
            for index, child in enumerate(children):
                if child.poll() is None:
                    log.error("process_killed", process=index, grace_s=grace_s)
                    child.kill()
                    child.wait()
            break
        again = signal.sigtimedwait(STOP_SIGNALS, min(POLL_S, left))
        if again is not None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(again.si_signo)
    return [exit_code(c.returncode) for c in children]
