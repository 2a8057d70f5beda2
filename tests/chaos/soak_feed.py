"""The soak's input: a steady rate of normal messages with a share of hostile records.

Hostile records come from the chaos suite's own generators: the hypothesis cases of
``fuzz.live_cases`` (keys, values and header lists of any bytes), the harness's malformed
values (``workload.bad``) and the poison scenario's deep JSON, non-UTF-8 header key and
null header value. Where each must land is what the chaos accounting expects of them.

confluent-kafka's Producer cannot send a header key that is not UTF-8 nor exactly a
null header value, so partition 0 of the inbound topic is produced through raw
librdkafka (``workload.send_raw``, in ordered batches about once a second) and every
record that needs that goes there; every other record goes to a partition drawn at
random, partition 0 included, so that it also carries its share of normal messages.
At random, not in turn: with records 20 ms apart and the worker's 25 ms batch wait, a
turn order decides which worker ever gets two records in one batch, and so its log
lines per message, by which partitions it happens to own.
``send_raw`` derives offsets from the partition's end, which holds because nothing
else writes partition 0.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import replace

from tests.chaos.fuzz import LiveCase, WireHeaders, expected_place, live_cases
from tests.chaos.report import Inputs, Sent
from tests.chaos.scenarios.common import LATE_STAGES
from tests.chaos.scenarios.poison_fuzz import DEEP
from tests.chaos.workload import Feeder, Record, bad, good, send_raw

RAW_PARTITION = 0
# Of the hostile records: hypothesis fuzz cases, the harness's malformed values, poison.
HOSTILE_MIX = (("fuzz", 0.7), ("bad", 0.15), ("poison", 0.15))


def needs_raw(headers: WireHeaders) -> bool:
    """A header key that is not UTF-8, or a null value: only raw librdkafka sends those."""
    for key, value in headers:
        if value is None:
            return True
        try:
            key.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


def poison(i: int, prefix: str) -> Record:
    """The poison scenario's small records, in turn: deep JSON, a bad header key, a null
    header value on a valid message and on one that is not JSON."""
    cid = f"{prefix}p{i}"
    which = i % 4
    if which == 0:
        late = frozenset({"route"} | LATE_STAGES)
        return Record(Sent(cid, "poison:deep-json", late, "d"), cid.encode(), DEEP, [])
    if which == 1:
        value = f'{{"message_id":"{cid}","text":"where is my refund"}}'.encode()
        headers: WireHeaders = [(b"\xff\xfekey", b"v"), (b"traceparent", b"00-hk-01")]
        return Record(
            Sent(cid, "poison:header-key", frozenset({"dlq:decode"})), cid.encode(), value, headers
        )
    if which == 2:
        rec = good(i, f"{prefix}nh", kind="poison:none-header")
        return Record(rec.sent, rec.key, rec.value, [(b"x-null", None), (b"traceparent", b"x")])
    return Record(
        Sent(cid, "poison:none-header", frozenset({"dlq:decode"})),
        cid.encode(),
        b"not json",
        [(b"x-null", None)],
    )


class HostileRecords:
    """Hostile records drawn by a seeded generator; fuzz cases from a pool, reused in turn."""

    def __init__(self, seed: int, pool: int, prefix: str = "sk-") -> None:
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.cases: list[LiveCase] = live_cases(pool, seed) if pool > 0 else []
        self.drawn = 0

    def kind(self) -> str:
        x = self.rng.random()
        for name, share in HOSTILE_MIX:
            if x < share:
                return name
            x -= share
        return HOSTILE_MIX[-1][0]

    def next(self) -> Record:
        i, self.drawn = self.drawn, self.drawn + 1
        kind = self.kind()
        if kind == "fuzz" and self.cases:
            key, value, headers = self.cases[i % len(self.cases)]
            where = frozenset(expected_place(key, value, headers))
            return Record(Sent(f"{self.prefix}fz{i}", "fuzz", where), key, value, headers)
        if kind == "poison":
            return poison(i, self.prefix)
        return bad(i, self.prefix)


class SteadyFeed:
    """Produces at ``rate`` per second in a thread, a ``hostile`` share of them hostile."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        inputs: Inputs,
        feeder: Feeder,
        *,
        rate: float,
        hostile: float,
        seed: int,
        hostile_pool: int,
        lane_every_s: float = 1.0,
    ) -> None:
        if partitions < 2:
            raise ValueError("the soak needs 2+ inbound partitions (0 is the raw lane)")
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.inputs, self.feeder = inputs, feeder
        self.rate, self.hostile, self.lane_every_s = rate, hostile, lane_every_s
        self.rng = random.Random(seed)
        self.hostiles = HostileRecords(seed, hostile_pool)
        self.kinds: Counter[str] = Counter()
        self.errors: list[str] = []
        self._lane: list[Record] = []
        self._lane_lock = threading.Lock()
        self._stop = threading.Event()  # the pacer stops producing
        self._lane_done = threading.Event()  # then the raw lane sends what it holds and ends
        self._threads: list[threading.Thread] = []
        self.produced = 0

    def start(self) -> None:
        for target, name in ((self._pace, "soak-feed"), (self._raw_lane, "soak-raw-lane")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop producing, send what the raw lane holds, flush the Feeder."""
        self._stop.set()
        if self._threads:
            self._threads[0].join(60)
        self._lane_done.set()
        for thread in self._threads[1:]:
            thread.join(120)
        self.feeder.flush(60)

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _record(self, i: int) -> Record:
        rec = self.hostiles.next() if self.rng.random() < self.hostile else good(i, "sk-")
        return replace(rec, partition=self.rng.randrange(self.partitions))

    def _pace(self) -> None:
        start = time.monotonic()
        i = 0
        while not self._stop.is_set():
            delay = start + i / self.rate - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            rec = self._record(i)
            self.kinds[rec.sent.kind] += 1
            if needs_raw(rec.headers) or rec.partition == RAW_PARTITION:
                with self._lane_lock:
                    self._lane.append(replace(rec, partition=RAW_PARTITION))
            else:
                self.feeder.send(rec)
            self.produced += 1
            i += 1

    def _raw_lane(self) -> None:
        while True:
            stopping = self._lane_done.wait(self.lane_every_s)
            with self._lane_lock:
                batch, self._lane = self._lane, []
            if batch:
                try:
                    send_raw(self.bootstrap, self.topic, self.inputs, batch)
                except Exception as exc:  # reported; the accounting shows what it cost
                    self.errors.append(f"raw lane: {type(exc).__name__}: {exc}"[:300])
            if stopping:
                return
