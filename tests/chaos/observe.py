"""What a chaos run watches: committed outputs as they appear, worker memory, faults."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from schemas import messages as m

# -- committed outputs ----------------------------------------------------------------


@dataclass
class Out:
    """One committed output record, reduced to what the accounting needs."""

    topic: str
    partition: int
    offset: int
    arrived: float  # time.monotonic() when the read_committed reader got it
    source: tuple[int, int] | None  # inbound (partition, offset) it came from
    place: str  # "escalate" | "auto_resolve" | "more_info" | "dlq:<stage>" | "?"
    message_id: str | None = None  # results only
    key: bytes | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # route checks, unreadable headers


def safe_headers(msg: Any) -> dict[str, bytes] | None:
    """The record's headers, the last value per key; None when they cannot be read.

    confluent-kafka's ``Message.headers()`` leaves a NULL in its list for a key that is
    not UTF-8, which can kill this process later (SystemError or SIGSEGV). A dead letter
    keeps the original headers, so the DLQ may hold such keys: read them the way the
    worker does (worker.kafka.headers, raw bytes through librdkafka) when that exists.
    """
    if _read_headers is not None:
        try:
            raw = _read_headers(msg)
        except Exception:
            return None
        return {k.decode(errors="replace"): v or b"" for k, v in raw}
    try:
        pairs = msg.headers() or []
    except (SystemError, UnicodeDecodeError, ValueError):
        return None
    return {str(k): (v if isinstance(v, bytes) else b"") for k, v in pairs}


def _header_reader() -> Any:
    try:
        from worker.kafka.headers import read_headers
    except ImportError:
        return None
    return read_headers


_read_headers = _header_reader()


class CommittedTail:
    """A read_committed reader of every route topic and the DLQ, from the beginning.

    It runs in a thread for the whole scenario, so each output has the moment it became
    visible (its transaction committed), which measures recovery after a fault; at the end
    ``drain`` reads up to the end of every partition. ``assign`` (no group) keeps it out
    of rebalances, and librdkafka reconnects it across a broker restart.
    """

    def __init__(self, bootstrap: str, routes: dict[str, str], dlq: str) -> None:
        self.routes = routes  # topic -> route name
        self.dlq = dlq
        self.outs: list[Out] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        # confluent-kafka hangs a call (position, watermarks) made while another thread
        # is inside consume() on the same consumer: calls on it take turns under this lock,
        # and the watermarks come from a second, unassigned consumer.
        self._client = threading.Lock()
        self._stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"chaos-tail-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "fetch.message.max.bytes": 8 * 1024 * 1024,
                "enable.partition.eof": False,
            }
        )
        topics = [*routes, dlq]
        meta = self._metadata_with(topics, timeout_s=30)
        self.partitions = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in sorted(meta.topics[t].partitions)
        ]
        self.consumer.assign(self.partitions)
        self._meta = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-tail-meta"})
        self._thread = threading.Thread(target=self._run, name="chaos-tail", daemon=True)
        self._thread.start()

    def _metadata_with(self, topics: list[str], timeout_s: float) -> Any:
        """Cluster metadata once it lists every topic: topics created a moment ago can be
        missing from the first answer of a broker that has not caught up."""
        deadline = time.monotonic() + timeout_s
        while True:
            meta = self.consumer.list_topics(timeout=timeout_s)
            missing = [t for t in topics if t not in meta.topics or meta.topics[t].error]
            if not missing:
                return meta
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics not in the cluster's metadata: {missing}")
            time.sleep(0.2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._client:
                    msgs = self.consumer.consume(500, timeout=0.2)
            except Exception as exc:
                self.errors.append(repr(exc))
                time.sleep(0.2)
                continue
            time.sleep(0.002)  # let a waiting drain() take the lock
            now = time.monotonic()
            batch = []
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        self.errors.append(str(err))
                    continue
                batch.append(self._reduce(msg, now))
            if batch:
                with self._lock:
                    self.outs.extend(batch)

    def _reduce(self, msg: Any, now: float) -> Out:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic == self.dlq:
            headers = safe_headers(msg)
            if headers is None:
                return Out(
                    topic,
                    partition,
                    offset,
                    now,
                    None,
                    "dlq:?",
                    key=msg.key(),
                    detail={"unreadable_headers": True},
                )
            source = None
            with contextlib.suppress(KeyError, ValueError):
                source = (
                    int(headers[m.HEADER_SOURCE_PARTITION]),
                    int(headers[m.HEADER_SOURCE_OFFSET]),
                )
            stage = headers.get(m.HEADER_STAGE, b"?").decode(errors="replace")
            return Out(
                topic,
                partition,
                offset,
                now,
                source,
                f"dlq:{stage}",
                key=msg.key(),
                detail={
                    "error_type": headers.get(m.HEADER_TYPE, b"").decode(errors="replace"),
                    "value_len": len(msg.value() or b""),
                },
            )
        try:
            value = orjson.loads(msg.value())
            src = value["source"]
            out = Out(
                topic,
                partition,
                offset,
                now,
                (int(src["partition"]), int(src["offset"])),
                str(value["route"]),
                message_id=value.get("message_id"),
                key=msg.key(),
            )
        except Exception as exc:
            return Out(
                topic,
                partition,
                offset,
                now,
                None,
                "?",
                key=msg.key(),
                detail={"unreadable_result": repr(exc)[:200]},
            )
        if self.routes.get(topic) != out.place:
            out.detail["topic_mismatch"] = f"route {out.place!r} on topic {topic}"
        routing = value.get("routing") or {}
        out.detail["routing"] = routing.get("reason")
        out.detail["unfamiliarity"] = routing.get("unfamiliarity")
        out.detail["predictions"] = _compact(value.get("predictions"))
        return out

    def snapshot(self) -> list[Out]:
        with self._lock:
            return list(self.outs)

    def count(self) -> int:
        with self._lock:
            return len(self.outs)

    def drain(self, timeout: float, quiet_s: float = 2.0) -> bool:
        """Read to the end of every partition (and quiet_s more); False if it timed out.

        Call it with no worker running: with every transaction finished, the end of a
        partition for read_committed is its high watermark.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = []
            for tp in self.partitions:
                try:
                    _, high = self._meta.get_watermark_offsets(tp, timeout=5, cached=False)
                except Exception:
                    high = None
                ends.append(high)
            with self._client:
                positions = self.consumer.position(
                    [TopicPartition(tp.topic, tp.partition) for tp in self.partitions]
                )
            if all(
                h is not None and (h == 0 or (p.offset >= 0 and p.offset >= h))
                for p, h in zip(positions, ends, strict=True)
            ):
                time.sleep(quiet_s)
                return True
            time.sleep(0.5)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self.consumer.close()
        with contextlib.suppress(Exception):
            self._meta.close()


def _compact(predictions: Any) -> dict[str, tuple[str, float]] | None:
    if not isinstance(predictions, dict):
        return None
    return {h: (p["label"], p["confidence"]) for h, p in predictions.items()}


# -- worker memory --------------------------------------------------------------------


def vm_hwm_kb(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Samples VmHWM of every registered pid every ``period_s`` while it lives."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.peak_kb: dict[int, int] = {}
        self._pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-rss", daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)

    def sample(self, pid: int) -> None:
        kb = vm_hwm_kb(pid)
        if kb is not None:
            with self._lock:
                self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), kb)

    def forget(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            with self._lock:
                pids = list(self._pids)
            for pid in pids:
                self.sample(pid)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def reap(pid: int) -> int | None:
    """The exit code (as Popen reports it) of an exited child; None while it runs.

    Not its rusage: wait4's ru_maxrss includes the parent's RSS at fork (fork copies the
    mm's high-water mark and exec folds it in), so a worker started by this 1 GB runner
    would report >= 1 GB. Peak RSS comes from VmHWM samples instead (RssSampler, and a
    sample taken just before every signal we send).
    """
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


# -- faults ---------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # time.monotonic()
    kind: str  # worker-kill | worker-sigterm | worker-start | broker-kill | broker-back | ...
    detail: str = ""
    recovery: bool = True  # counts for "time from a fault to the next committed output"


class FaultLog:
    def __init__(self, name: str = "") -> None:
        self.name = name
        self.started = time.monotonic()
        self.events: list[Fault] = []

    def add(self, kind: str, detail: str = "", recovery: bool = True) -> Fault:
        fault = Fault(time.monotonic(), kind, detail, recovery)
        self.events.append(fault)
        print(f"  [{self.name} {fault.at - self.started:6.1f}s] {kind} {detail}", flush=True)
        return fault

    def note(self, kind: str, detail: str = "") -> Fault:
        """An event that is not a fault (a start, a scale step): logged, not timed."""
        return self.add(kind, detail, recovery=False)
