"""Several workers per host (worker.runtime.processes): what each is given, and the supervisor
without a broker. tests/integration/worker/test_processes.py runs the set on one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from pydantic import ValidationError

from tests.conftest import REPO
from worker.errors import ConfigError
from worker.runtime.processes import child_env, exit_code, merged_env
from worker.settings import ENV_PREFIX, MAX_PROCESSES, WorkerSettings


def settings(**env: str) -> WorkerSettings:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    with mock.patch.dict(os.environ, clean | env, clear=True):
        return WorkerSettings()


def as_child(parent: dict[str, str], index: int) -> WorkerSettings:
    """The settings process ``index`` reads: the parent's environment under its own."""
    return settings(**merged_env(parent, child_env(settings(**parent), index)))


def test_each_process_gets_its_own_transactional_id_and_admin_port() -> None:
    parent = {
        f"{ENV_PREFIX}PROCESSES": "3",
        f"{ENV_PREFIX}TRANSACTIONAL_ID": "support-router-4",
        f"{ENV_PREFIX}ADMIN_PORT": "9400",
        f"{ENV_PREFIX}GROUP_ID": "g",
    }
    children = [as_child(parent, i) for i in range(3)]
    assert [c.transactional_id for c in children] == [f"support-router-4-{i}" for i in range(3)]
    assert [c.admin_port for c in children] == [9400, 9401, 9402]
    assert [c.process_index for c in children] == [0, 1, 2]
    # A worker, not another supervisor; one group; no static membership where none was.
    assert {(c.processes, c.group_id, c.group_instance_id) for c in children} == {(1, "g", None)}


def test_the_default_transactional_id_and_a_free_port_carry_over() -> None:
    parent = {f"{ENV_PREFIX}PROCESSES": "2", f"{ENV_PREFIX}ADMIN_PORT": "0"}
    default = settings(**parent).transactional_id
    assert default.startswith("support-router-")
    children = [as_child(parent, i) for i in range(2)]
    assert [c.transactional_id for c in children] == [f"{default}-0", f"{default}-1"]
    assert [c.admin_port for c in children] == [0, 0]  # each asks the OS for one


def test_static_membership_gets_an_instance_id_per_process() -> None:
    # One group.instance.id in two live members: the broker fences one (FENCED_INSTANCE_ID).
    parent = {f"{ENV_PREFIX}PROCESSES": "2", f"{ENV_PREFIX}GROUP_INSTANCE_ID": "support-router-1"}
    ids = [as_child(parent, i).group_instance_id for i in range(2)]
    assert ids == ["support-router-1-0", "support-router-1-1"]


def test_the_childs_values_win_over_the_parents_in_any_case() -> None:
    # pydantic-settings reads env names case-insensitively: a lower-case leftover must go.
    parent = {"support_worker_admin_port": "9500", "OTHER": "kept"}
    merged = merged_env(parent, {f"{ENV_PREFIX}ADMIN_PORT": "9401"})
    assert merged == {"OTHER": "kept", f"{ENV_PREFIX}ADMIN_PORT": "9401"}


def test_ports_past_65535_are_a_configuration_error() -> None:
    s = settings(**{f"{ENV_PREFIX}PROCESSES": "3", f"{ENV_PREFIX}ADMIN_PORT": "65534"})
    with pytest.raises(ConfigError, match="admin_port"):
        child_env(s, 0)


@pytest.mark.parametrize("value", ["0", str(MAX_PROCESSES + 1)])
def test_processes_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="processes"):
        settings(**{f"{ENV_PREFIX}PROCESSES": value})


def test_exit_codes_read_as_a_shell_reports_them() -> None:
    assert [exit_code(c) for c in (0, 1, 3, -signal.SIGKILL, -signal.SIGTERM)] == [
        0,
        1,
        3,
        137,
        143,
    ]


def test_the_supervisor_loads_neither_torch_nor_librdkafka() -> None:
    code = (
        "import sys; from worker import cli; from worker.runtime import logs, processes; "
        "print(sorted({'torch', 'numpy', 'confluent_kafka'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- the supervisor, as a process, without a broker --------------------------------------


def run_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update({f"{ENV_PREFIX}{k}": v for k, v in settings.items()})
    return env


@contextlib.contextmanager
def supervisor(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's reaper may be slow, or absent in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(check: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout}s; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def worker_pids(log: Path) -> list[int]:
    (started,) = [e for e in lines(log) if e.get("event") == "supervisor_started"]
    return list(started["pids"])


def both_listening(log: Path) -> bool:
    """Both workers have their admin port open (and then wait for Kafka)."""
    listening = {e.get("process") for e in lines(log) if e.get("event") == "admin_listening"}
    return {0, 1} <= listening


# A broker that refuses connections: the workers wait in init_transactions, and a stopped
# one is ended by its own short grace if it does not finish first.
NO_BROKER = {
    "PROCESSES": "2",
    "MODEL__VARIANT": "null",
    "ADMIN_PORT": "0",
    "KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "SHUTDOWN_GRACE_S": "2",
    "TRANSACTIONAL_ID": "unit",
}


def test_a_model_that_cannot_load_ends_the_set_with_its_exit_code(tmp_path: Path) -> None:
    env = run_env(PROCESSES="2", ADMIN_PORT="0", MODEL__PATH=str(tmp_path / "missing"))
    with supervisor(tmp_path, env) as (proc, log):
        assert proc.wait(120) == 3, log.read_text()[-3000:]
    events = lines(log)
    starting = {e["process"]: e["settings"] for e in events if e.get("event") == "starting"}
    assert set(starting) == {0, 1}, "each worker's lines carry its process index"
    default = settings().transactional_id  # support-router-<hostname>
    assert [starting[i]["transactional_id"] for i in (0, 1)] == [f"{default}-0", f"{default}-1"]
    assert any(e.get("event") == "process_exited" and e["exit_code"] == 3 for e in events)


def test_a_worker_that_dies_takes_the_others_down_with_its_exit_code(tmp_path: Path) -> None:
    with supervisor(tmp_path, run_env(**NO_BROKER)) as (proc, log):
        wait_until(lambda: both_listening(log), 120, "two workers not listening", log)
        first, second = worker_pids(log)
        os.kill(second, signal.SIGKILL)
        assert proc.wait(30) == 128 + signal.SIGKILL, log.read_text()[-3000:]
        assert not alive(first), "the other worker outlived its supervisor"
    (exited,) = [e for e in lines(log) if e.get("event") == "process_exited"]
    assert (exited["process"], exited["exit_code"]) == (1, 137)
    (stopped,) = [e for e in lines(log) if e.get("event") == "supervisor_stopped"]
    assert stopped["exit_code"] == 137 and stopped["exit_codes"][1] == 137


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    with supervisor(tmp_path, run_env(**NO_BROKER)) as (proc, log):
        wait_until(lambda: both_listening(log), 120, "two workers not listening", log)
        pids = worker_pids(log)
        proc.kill()
        proc.wait(10)
        # PR_SET_PDEATHSIG: SIGTERM, then each drains (nothing to drain) within its grace.
        wait_until(lambda: not any(alive(p) for p in pids), 20, "orphaned workers still ran", log)


def test_sighup_reaches_every_worker_and_ends_none(tmp_path: Path) -> None:
    with supervisor(tmp_path, run_env(**NO_BROKER)) as (proc, log):
        wait_until(lambda: both_listening(log), 120, "two workers not listening", log)
        proc.send_signal(signal.SIGHUP)

        def asked() -> set[int]:
            return {e.get("process") for e in lines(log) if e.get("event") == "reload_requested"}

        wait_until(lambda: asked() == {0, 1}, 30, "SIGHUP not passed to both workers", log)
        assert proc.poll() is None and all(alive(pid) for pid in worker_pids(log))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert not [e for e in lines(log) if e.get("event") == "process_exited"]
