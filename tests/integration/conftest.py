"""The real-broker tier: one session-scoped broker, unique topics per test.

The broker is KAFKA_BOOTSTRAP_SERVERS when set (an existing cluster, or the one
`make test` started through `kafka run`); otherwise this fixture runs
`deploy/local-kafka/kafka up` and `kafka down` around the session.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import KAFKA_TOOL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    up = subprocess.run(
        [sys.executable, str(KAFKA_TOOL), "up"], stdout=subprocess.PIPE, text=True, check=True
    )
    try:
        yield up.stdout.strip()
    finally:
        subprocess.run([sys.executable, str(KAFKA_TOOL), "down"], check=False)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def make_topic(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Create a topic whose name no other test uses; deleted after the test."""
    created: list[str] = []

    def _make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield _make
    if created:
        for fut in kafka_admin.delete_topics(created).values():
            # Best effort: a leftover topic only costs disk.
            with contextlib.suppress(Exception):
                fut.result(timeout=30)
