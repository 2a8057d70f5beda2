"""Run real worker processes against the test broker, and read what they committed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import REPO

ROUTES = ("escalate", "auto_resolve", "more_info")


@dataclass
class Topics:
    inbound: str
    escalate: str
    auto_resolve: str
    more_info: str
    dlq: str

    def outputs(self) -> list[str]:
        return [self.escalate, self.auto_resolve, self.more_info, self.dlq]

    def env(self) -> dict[str, str]:
        return {f"SUPPORT_WORKER_TOPICS__{k.upper()}": v for k, v in self.__dict__.items()}


def make_topics(
    make_topic: Callable[..., str], partitions: int = 4, route_config: dict[str, str] | None = None
) -> Topics:
    return Topics(
        inbound=make_topic("in", partitions),
        escalate=make_topic("esc", 2, route_config),
        auto_resolve=make_topic("auto", 2, route_config),
        more_info=make_topic("more", 2, route_config),
        dlq=make_topic("dlq", 1),
    )


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_port: int = 0
    started: float = field(default_factory=time.monotonic)

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def ready(self) -> bool:
        """/readyz answers 200 now (the admin port is read from the log once it is there)."""
        if not self.admin_port:
            ports = [e["port"] for e in self.log_lines() if e.get("event") == "admin_listening"]
            self.admin_port = ports[0] if ports else 0
        return bool(self.admin_port) and self.get("/readyz")[0] == 200

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=5
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith((name + " ", name + "{")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_batches(self, n: int, timeout: float = 60) -> None:
        """Until n batches are committed: 'mid-backlog' for the crash and stop tests."""
        deadline = time.monotonic() + timeout
        while self.metric("support_batches_total") < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_WORKER_")}
    env.update(topics.env())
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        SUPPORT_WORKER_MODEL__PATH=str(model),
        SUPPORT_WORKER_MODEL__THREADS="1",
        SUPPORT_WORKER_GROUP_ID=group,
        SUPPORT_WORKER_TRANSACTIONAL_ID=txn_id,
        SUPPORT_WORKER_ADMIN_PORT="0",
        SUPPORT_WORKER_SESSION_TIMEOUT_MS="6000",
        SUPPORT_WORKER_STATISTICS_INTERVAL_MS="1000",
    )
    env.update({f"SUPPORT_WORKER_{k.upper()}": v for k, v in settings.items()})
    env.update(extra_env or {})
    log_path = tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return WorkerProc(proc, log_path)


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
class Committed:
    results: list[tuple[str, dict[str, Any], Any]]  # (topic, value, message)
    dead: list[tuple[str, dict[str, bytes]]]  # (key, headers)


def read_committed(bootstrap: str, topics: Topics, expect: int, timeout: float = 120) -> Committed:
    """Everything committed on the output topics, waiting until ``expect`` records arrived."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(topics.outputs())
    out = Committed([], [])
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
    if worker.proc.poll() is None:
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(10)
