"""`support-worker topics apply` against the real broker."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.conftest import REPO
from worker.settings import TopicNames

# Every topic deploy/topics.yaml declares: the ones the worker's settings name.
TOPICS = sorted(TopicNames().model_dump().values())


def _apply(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "topics",
            "apply",
            "--bootstrap-servers",
            bootstrap,
            "--replication-factor",
            "1",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _partitions(admin: AdminClient, name: str) -> int:
    return len(admin.list_topics(name, timeout=10).topics[name].partitions)


@pytest.fixture
def suffix(kafka_admin: AdminClient) -> str:
    s = f".{uuid.uuid4().hex[:8]}"
    yield s
    kafka_admin.delete_topics([t + s for t in TOPICS])


def test_apply_creates_every_topic_then_is_idempotent(
    kafka_bootstrap: str, kafka_admin: AdminClient, suffix: str
) -> None:
    first = _apply(kafka_bootstrap, "--name-suffix", suffix)
    assert first.returncode == 0, first.stderr
    assert [line.split()[0] for line in first.stdout.splitlines()] == ["create"] * len(TOPICS)
    assert _partitions(kafka_admin, "support.inbound" + suffix) == 12
    assert _partitions(kafka_admin, "support.dlq" + suffix) == 3

    second = _apply(kafka_bootstrap, "--name-suffix", suffix)
    assert second.returncode == 0, second.stderr
    assert [line.split()[0] for line in second.stdout.splitlines()] == ["ok"] * len(TOPICS)


def test_apply_adds_partitions_and_reports_drift(
    kafka_bootstrap: str, kafka_admin: AdminClient, suffix: str, tmp_path: Path
) -> None:
    assert _apply(kafka_bootstrap, "--name-suffix", suffix, "--partitions", "2").returncode == 0
    grown = _apply(kafka_bootstrap, "--name-suffix", suffix)  # the file's counts: more
    assert grown.returncode == 0, grown.stderr
    assert "add_partitions  support.inbound" in grown.stdout
    assert _partitions(kafka_admin, "support.inbound" + suffix) == 12

    shrink = _apply(kafka_bootstrap, "--name-suffix", suffix, "--partitions", "2")
    assert shrink.returncode == 1
    assert "Kafka cannot remove partitions" in shrink.stdout
    assert "drift" in shrink.stderr


def test_apply_fixes_config_drift(
    kafka_bootstrap: str, kafka_admin: AdminClient, suffix: str, tmp_path: Path
) -> None:
    assert _apply(kafka_bootstrap, "--name-suffix", suffix).returncode == 0
    edited = (REPO / "deploy" / "topics.yaml").read_text().replace('"2592000000"', '"86400000"')
    path = tmp_path / "topics.yaml"
    path.write_text(edited)
    out = _apply(kafka_bootstrap, "--name-suffix", suffix, "--file", str(path))
    assert out.returncode == 0, out.stderr
    assert "set_configs     support.dlq" in out.stdout
    assert "retention.ms: 2592000000 -> 86400000" in out.stdout
