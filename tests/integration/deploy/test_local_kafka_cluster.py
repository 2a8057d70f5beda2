"""`deploy/local-kafka/kafka up --brokers 3`: a three-node cluster's lifecycle, in a private
state dir (the chaos suite, `make chaos CHAOS_ARGS="--brokers 3"`, runs its faults)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import KAFKA_TOOL

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) and not os.environ.get("LOCAL_KAFKA_MANAGED"),
    reason="KAFKA_BOOTSTRAP_SERVERS names a user's cluster: start no broker of our own",
)


def _tool(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["LOCAL_KAFKA_STATE"] = str(state)
    return subprocess.run(
        [sys.executable, str(KAFKA_TOOL), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_three_nodes_up_degraded_relaunched_down(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    try:
        up = _tool(state, "up", "--brokers", "3")
        assert up.returncode == 0, up.stderr
        addrs = up.stdout.strip().split(",")
        assert len(addrs) == 3 and all(a.startswith("127.0.0.1:") for a in addrs)

        # Every node answers for a topic with three copies, of which writes need two.
        admin = AdminClient({"bootstrap.servers": up.stdout.strip()})
        assert set(admin.list_topics(timeout=15).brokers) == {1, 2, 3}
        futures = admin.create_topics([NewTopic("rf3", 3, 3, config={"min.insync.replicas": "2"})])
        futures["rf3"].result(timeout=60)
        parts = admin.list_topics("rf3", timeout=15).topics["rf3"].partitions.values()
        assert all(sorted(p.replicas) == [1, 2, 3] for p in parts)

        again = _tool(state, "up", "--brokers", "3")
        assert again.stdout == up.stdout and "reusing the 3-node cluster" in again.stderr
        single = _tool(state, "up")
        assert single.returncode == 1 and "a 3-node cluster runs from" in single.stderr

        pid = int((state / "node-2" / "broker.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        assert _gone(pid)
        status = _tool(state, "status")
        assert status.returncode == 3 and "node 2: stopped" in status.stdout

        back = _tool(state, "relaunch", "--node", "2")
        assert back.returncode == 0, back.stderr
        assert int((state / "node-2" / "broker.pid").read_text()) != pid
        status = _tool(state, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(", listed") == 3
    finally:
        pids = [int(p.read_text()) for p in state.glob("node-*/broker.pid")]
        down = _tool(state, "down")
    assert down.returncode == 0, down.stderr
    assert all(_gone(p) for p in pids)
    assert _tool(state, "status").returncode == 3
