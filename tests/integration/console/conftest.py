"""A worker and a console on topics of their own, shared by this package's tests.

The worker runs the smoke artifact with max_text_chars 300, so that a text over the limit
is short enough to type into the page.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.worker.harness import Topics, make_topics, start_worker
from tools import console_proc, worker_proc
from tools.console_proc import ConsoleProc

MAX_TEXT_CHARS = 300


@dataclass(frozen=True)
class Pipeline:
    bootstrap: str
    topics: Topics
    group: str


@pytest.fixture(scope="package")
def pipeline(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    smoke_artifact: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """Topics and one ready worker on them, for the whole package."""
    names: list[str] = []

    def make(prefix: str, partitions: int, config: dict[str, str] | None = None) -> str:
        name = f"console-{prefix}.{uuid.uuid4().hex[:10]}"
        fut = kafka_admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
        fut[name].result(timeout=30)
        names.append(name)
        return name

    topics = make_topics(make, partitions=2)
    tag = uuid.uuid4().hex[:8]
    group = f"console-g-{tag}"
    tmp = tmp_path_factory.mktemp("console-worker")
    worker = start_worker(
        kafka_bootstrap,
        topics,
        smoke_artifact,
        tmp,
        group=group,
        txn_id=f"console-t-{tag}",
        max_text_chars=str(MAX_TEXT_CHARS),
    )
    try:
        worker.wait_ready()
        yield Pipeline(kafka_bootstrap, topics, group)
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.wait(30)
        for fut in kafka_admin.delete_topics(names).values():
            fut.exception(timeout=30)
    assert code == 0, worker.tail()


@contextlib.contextmanager
def console_on(
    p: Pipeline,
    tmp: Path,
    *args: str,
    group: str | None = None,
    topics: Mapping[str, str] | None = None,
) -> Iterator[ConsoleProc]:
    """A ready console on the pipeline's topics (and ``topics``: more roles, such as
    review, feedback, shadow) and (unless told otherwise) its worker group; stopped after,
    however the test ends, and it must exit 0."""
    env = worker_proc.worker_env(
        p.bootstrap,
        {**p.topics.roles(), **(topics or {})},
        Path("unused"),
        group=group or p.group,
        txn_id="unused",
    )
    with console_proc.running(env, tmp / f"console-{uuid.uuid4().hex[:6]}.log", args=args) as c:
        yield c


@pytest.fixture(scope="package")
def console(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProc]:
    with console_on(pipeline, tmp_path_factory.mktemp("console")) as c:
        yield c


def events(
    console: ConsoleProc,
    until: Callable[[str, Any], bool],
    timeout: float = 30,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Reads the console's event stream until ``until(event, data)`` is true, for at most
    ``timeout`` seconds in all (a stats event each second keeps the stream busy);
    ``headers``: a logged-in client's (console_proc.Client.headers)."""
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(console.url + "api/events", headers=dict(headers or {}))
    with urllib.request.urlopen(req, timeout=timeout) as stream:
        event = None
        for raw in stream:
            if time.monotonic() > deadline:
                break
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and until(str(event), json.loads(line[6:])):
                return
    raise AssertionError(f"the event stream did not show it within {timeout} s")


def group_seen(console: ConsoleProc) -> dict[str, Any]:
    """The workers' group as the console's stats report it, once it has been looked up."""
    seen: dict[str, Any] = {}

    def until(event: str, data: Any) -> bool:
        if event in ("snapshot", "stats") and data["group"] is not None:
            seen.update(data["group"])
        return bool(seen)

    events(console, until)
    return seen


def published(p: Pipeline, message_id: str, timeout: float = 30) -> tuple[str, dict[str, Any]]:
    """What the worker committed for ``message_id``, read on its own: (topic, value) for a
    result; (dlq topic, {"headers": ..., "value": ...}) for a dead letter."""
    c = Consumer(
        {
            "bootstrap.servers": p.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(p.topics.outputs())
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                assert m.error() is None, m.error()
                try:
                    value = json.loads(m.value())
                except ValueError:
                    continue
                if not isinstance(value, dict) or value.get("message_id") != message_id:
                    continue
                if m.topic() == p.topics.dlq:
                    headers = {k: (v or b"").decode() for k, v in m.headers() or []}
                    return m.topic(), {"headers": headers, "value": value}
                return m.topic(), value
    finally:
        c.close()
    raise AssertionError(f"nothing committed for {message_id} within {timeout} s")


def learning_topics(make_topic: Callable[..., str]) -> dict[str, str]:
    """A review, a feedback and a shadow topic of the test's own (roles for console_on)."""
    return {role: make_topic(f"console-{role}", 1) for role in ("review", "feedback", "shadow")}


def produce_values(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    """(key, value) records, acknowledged by the broker before this returns."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(10) == 0


def read_all(bootstrap: str, topic: str, timeout: float = 30) -> list[tuple[bytes | None, bytes]]:
    """Every committed (key, value) of ``topic``, read up to its end as of this call."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    open_partitions = set(partitions)
    out: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while open_partitions and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                open_partitions.discard(m.partition())
                continue
            out.append((m.key(), m.value() or b""))
    finally:
        c.close()
    assert not open_partitions, f"{topic}: not read to its end within {timeout} s"
    return out
