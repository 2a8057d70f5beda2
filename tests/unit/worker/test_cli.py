"""The worker's command line, without a broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import PACKAGE_VERSION
from tests.conftest import REPO
from worker.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"support-worker {PACKAGE_VERSION}"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("run", "classify", "console", "topics", "dlq"))


def test_topics_apply_against_an_unreachable_broker_fails_fast_naming_it() -> None:
    env = dict(os.environ, SUPPORT_WORKER_KAFKA__ADMIN_TIMEOUT_S="3")
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "topics",
            "apply",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--replication-factor",
            "1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1 within 3s" in out.stderr
    assert elapsed < 20
    assert len(out.stderr.splitlines()) == 1  # one line, no librdkafka reconnect spam


def test_topics_apply_with_a_bad_setting_exits_2_naming_it_not_its_value(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-password-file"
    env = dict(os.environ, SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE=str(missing))
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "topics", "apply", "--replication-factor", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "configuration error" in out.stderr and "sasl_password_file" in out.stderr
    assert "Traceback" not in out.stderr


def torch_sees_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _worker_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``support-worker run`` as a process, for what it prints before it would consume."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_setting_exits_2_naming_it() -> None:
    env = dict(os.environ, SUPPORT_WORKER_BATCHING__MAX_BATCH_SIZE="zero")
    out = _worker_run(env)
    assert out.returncode == 2
    assert "setting 'batching.max_batch_size'" in out.stderr and "'zero'" in out.stderr


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_bad_model_path_is_one_line_and_exit_3(make: str, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "model"
    if make == "empty":
        path.mkdir()
    env = dict(os.environ, SUPPORT_WORKER_MODEL__PATH=str(path), SUPPORT_WORKER_ADMIN_PORT="0")
    out = _worker_run(env)
    assert out.returncode == 3, out.stderr
    # one line besides the JSON log lines, and no traceback
    (line,) = [ln for ln in out.stderr.splitlines() if not ln.startswith("{")]
    assert str(path) in line and "cannot load the model" in line
    assert ("not a directory" if make == "missing" else "missing manifest.json") in line


def test_classify_prints_the_outbound_json(smoke_artifact: object) -> None:
    import json

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "classify",
            "--model",
            str(smoke_artifact),
            "my card was declined!!",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["topic"].startswith("support.")
    assert printed["value"]["message"]["text"] == "my card was declined!!"
    assert set(printed["value"]["predictions"]) == {"intent", "urgency", "sentiment", "action"}


def test_classify_runs_in_bfloat16_on_the_cpu(smoke_artifact: object) -> None:
    """bf16 weights, as a GPU serves: they run on any CPU, if slowly."""
    import json

    env = dict(os.environ, SUPPORT_WORKER_MODEL__VARIANT="torch-bf16-weights")
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "classify", "--model", str(smoke_artifact), "hi"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["value"]["predictions"]["intent"]["label"]


@pytest.mark.skipif(torch_sees_cuda(), reason="this host has a CUDA device")
def test_a_device_this_host_lacks_exits_2_in_one_line(smoke_artifact: object) -> None:
    env = dict(
        os.environ,
        SUPPORT_WORKER_MODEL__PATH=str(smoke_artifact),
        SUPPORT_WORKER_MODEL__DEVICE="cuda",
        SUPPORT_WORKER_ADMIN_PORT="0",
    )
    out = _worker_run(env)
    assert out.returncode == 2, out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if not ln.startswith("{")]
    want = "support-worker: configuration error: model.device=cuda, but torch sees no CUDA device"
    assert line == want


def test_console_on_a_port_in_use_is_a_configuration_error() -> None:
    """In a process of its own: the console configures structlog for its process, which
    in pytest's would keep writing to a captured stream after the test closed it."""
    import socket

    from worker.errors import ExitCode

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "worker.cli", "console", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_hash_password_reads_stdin_and_prints_a_line_the_console_accepts(tmp_path: Path) -> None:
    from worker.console.auth.users import Users

    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "console", "hash-password", "ana", "agent"],
        cwd=REPO,
        input="correct horse\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ana:agent:$argon2id$") and "correct horse" not in proc.stdout
    users = tmp_path / "users"
    users.write_text(proc.stdout)
    assert Users.from_file(users).verify("ana", "correct horse") is not None
