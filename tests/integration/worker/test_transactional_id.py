"""Two live replicas with one transactional.id: the fenced one exits 1 with one line naming
the setting (issue 9, defect 8). docs/reliability.md measures the id scheme itself."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from tests.integration.worker.harness import make_topics, message, start_worker


def test_a_replica_fenced_by_a_second_one_with_its_id_exits_naming_the_setting(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic, partitions=2)
    tag = uuid.uuid4().hex[:8]
    shared = {"group": f"g-{tag}", "txn_id": f"same-{tag}"}
    first = start_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path, **shared)
    second = None
    try:
        first.wait_ready()
        second = start_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path, **shared)
        second.wait_ready()  # its init_transactions fences the first
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        deadline = time.monotonic() + 60
        i = 0
        while first.proc.poll() is None and time.monotonic() < deadline:
            for _ in range(20):  # traffic, so the first one tries to commit
                p.produce(
                    topics.inbound, value=json.dumps(message(i)).encode(), key=str(i).encode()
                )
                i += 1
            p.flush(10)
            time.sleep(0.5)
        assert first.proc.poll() == 1, first.tail()
        (fatal,) = [e for e in first.log_lines() if e.get("event") == "fatal_kafka_error"]
        assert "SUPPORT_WORKER_TRANSACTIONAL_ID" in fatal["error"], fatal
        assert f"same-{tag}" in fatal["error"]
        assert "Traceback" not in first.log_path.read_text()
        assert second.proc.poll() is None  # the newer one keeps routing
    finally:
        for w in (first, second):
            if w is not None and w.proc.poll() is None:
                w.signal(signal.SIGTERM)
                w.wait(30)
