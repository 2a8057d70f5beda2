"""Run real worker processes against the test broker, and read what they committed.

The processes are ``tools.worker_proc.WorkerProc`` (re-exported here), the one driver
the bench uses too.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from schemas.messages import ROUTES
from tools import worker_proc
from tools.worker_proc import WorkerProc

__all__ = [
    "MALFORMED",
    "ROUTES",
    "CommittedOutputs",
    "Topics",
    "WorkerProc",
    "committed_reader",
    "end_offsets",
    "kill",
    "make_topics",
    "message",
    "produce",
    "read_committed",
    "running_worker",
    "start_worker",
    "wait_for_event",
]


@dataclass
class Topics:
    inbound: str
    escalate: str
    auto_resolve: str
    more_info: str
    dlq: str

    def outputs(self) -> list[str]:
        return [self.escalate, self.auto_resolve, self.more_info, self.dlq]

    def roles(self) -> dict[str, str]:
        return dict(self.__dict__)


def make_topics(
    make_topic: Callable[..., str],
    partitions: int = 4,
    route_config: dict[str, str] | None = None,
    inbound_config: dict[str, str] | None = None,
) -> Topics:
    return Topics(
        inbound=make_topic("in", partitions, inbound_config),
        escalate=make_topic("esc", 2, route_config),
        auto_resolve=make_topic("auto", 2, route_config),
        more_info=make_topic("more", 2, route_config),
        dlq=make_topic("dlq", 1),
    )


# Worker processes come from tools/worker_proc.py, the bench's driver as well; these are
# the settings every test worker gets (``start_worker``'s keyword settings override them).
TEST_SETTINGS = {
    "model__threads": "1",
    "session_timeout_ms": "6000",
    "statistics_interval_ms": "1000",
}


def start_worker(
    bootstrap: str,
    topics: Topics,
    model: Path,
    tmp: Path,
    *,
    group: str,
    txn_id: str,
    module: str = "worker.cli",
    extra_env: dict[str, str] | None = None,
    **settings: str,
) -> WorkerProc:
    """``python -m <module> run`` with the test settings; ``settings`` become SUPPORT_WORKER_*.

    ``module`` swaps the entry point (tests/chaos/faulty_worker.py wraps the worker's),
    and ``extra_env`` adds variables such as its fault switches.
    """
    return worker_proc.start(
        bootstrap,
        topics.roles(),
        model,
        tmp / f"worker-{uuid.uuid4().hex[:6]}.log",
        group=group,
        txn_id=txn_id,
        module=module,
        settings={**TEST_SETTINGS, **settings},
        extra_env=extra_env,
    )


@contextlib.contextmanager
def running_worker(
    bootstrap: str, topics: Topics, model: Path, tmp: Path, **settings: str
) -> Iterator[WorkerProc]:
    """A ready worker with a group and transactional.id of its own; SIGTERM, exit 0 after."""
    tag = uuid.uuid4().hex[:8]
    w = start_worker(bootstrap, topics, model, tmp, group=f"g-{tag}", txn_id=f"t-{tag}", **settings)
    try:
        w.wait_ready()
        yield w
    finally:
        w.signal(signal.SIGTERM)
        code = w.wait(30)
    assert code == 0, w.tail()


def wait_for_event(w: WorkerProc, event: str, count: int, timeout: float = 120) -> None:
    """Until the worker's log holds ``count`` lines of ``event`` (model_swapped, ...)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(e.get("event") == event for e in w.log_lines()) >= count:
            return
        assert w.proc.poll() is None, w.tail()
        time.sleep(0.2)
    raise AssertionError(f"no {count}x {event}:\n{w.tail()}")


def message(i: int, *, text: str | None = None) -> dict[str, Any]:
    texts = [
        "my card was declined at the store",
        "WHERE IS MY REFUND",
        "how do i reset my pin",
        "what are your opening hours?",
        "this is the worst service, fix my bill NOW!!",
        "thanks, just wondering about the fees",
        "",
        "i can't log in   ",
    ]
    return {
        "message_id": f"m{i}",
        "conversation_id": f"c{i % 97}",
        "text": texts[i % len(texts)] if text is None else text,
    }


MALFORMED: list[bytes] = [
    b"not json",
    b"\xff\xfe invalid utf8",
    b"[1, 2]",
    b'{"text": "no id"}',
    b'{"message_id": 7, "text": "x"}',
    b'{"message_id": "x"}',
    b'{"message_id": "y", "text": 5}',
]


def produce(bootstrap: str, topic: str, n: int, bad_every: int = 0) -> tuple[set[str], set[str]]:
    """n records; every bad_every-th is malformed (keyed bad-i). Returns (good ids, bad keys)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    # Connect first: CreateTime is stamped at produce(), and a cold client would spend
    # its connection setup inside the latency we measure from that timestamp.
    p.list_topics(topic, timeout=10)
    good, bad = set(), set()
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            key = f"bad-{i}"
            p.produce(
                topic,
                key=key.encode(),
                value=MALFORMED[i % len(MALFORMED)],
                headers=[("traceparent", f"00-{i}-01".encode())],
            )
            bad.add(key)
        else:
            msg = message(i)
            p.produce(
                topic,
                key=msg["conversation_id"].encode(),
                value=json.dumps(msg).encode(),
                headers=[("traceparent", f"00-{i}-01".encode())],
            )
            good.add(msg["message_id"])
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return good, bad


@dataclass
class CommittedOutputs:
    results: list[tuple[str, dict[str, Any], Any]]  # (topic, value, message)
    dead: list[tuple[str, dict[str, bytes]]]  # (key, headers)


def committed_reader(bootstrap: str) -> Consumer:
    """A consumer of its own group that reads committed records from the start."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def read_committed(
    bootstrap: str, topics: Topics, expect: int, timeout: float = 120
) -> CommittedOutputs:
    """Everything committed on the output topics, waiting until ``expect`` records arrived."""
    c = committed_reader(bootstrap)
    c.subscribe(topics.outputs())
    out = CommittedOutputs([], [])
    deadline = time.monotonic() + timeout
    quiet_until = None
    while time.monotonic() < deadline:
        msgs = c.consume(500, timeout=0.5)
        for m in msgs:
            assert m.error() is None, m.error()
            if m.topic() == topics.dlq:
                out.dead.append(((m.key() or b"").decode(), dict(m.headers() or [])))
            else:
                out.results.append((m.topic(), json.loads(m.value()), m))
        total = len(out.results) + len(out.dead)
        if total >= expect:
            # keep reading a moment: a duplicate would arrive now, and must be caught
            quiet_until = quiet_until or time.monotonic() + 3
            if time.monotonic() > quiet_until:
                break
    c.close()
    return out


def end_offsets(bootstrap: str, topic: str, partitions: int) -> Iterator[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4().hex}"})
    for p in range(partitions):
        yield c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    c.close()


def kill(worker: WorkerProc) -> None:
    worker.kill()


def version_runs(results: Iterable[tuple[dict[str, Any], Message]]) -> set[tuple[str, ...]]:
    """Per inbound partition, in offset order, the versions that routed it, runs merged."""
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for value, msg in results:
        raw = dict(msg.headers() or [])["model-version"]
        header = raw.decode() if isinstance(raw, bytes) else str(raw)
        assert header == value["model"]["version"]
        src = value["source"]
        by_partition.setdefault(src["partition"], []).append((src["offset"], header))
    runs = set()
    for rows in by_partition.values():
        seq = [v for _, v in sorted(rows)]
        runs.add(tuple(v for k, v in enumerate(seq) if k == 0 or seq[k - 1] != v))
    return runs
