"""librdkafka starts a partition at auto.offset.reset when its stable offset is late.

The reproduction behind docs/reliability.md ("Where a new partition starts") and the
upstream report beside it, with the raw client only (no worker code):

1. a topic of 2 partitions, 100 records each; the group commits offset 50 on both;
2. a producer opens a transaction that holds offset 60 for partition 0 and keeps it open
   (a replica that died mid-transaction);
3. two read_committed members (cooperative-sticky) join: each gets one partition, and the
   one with partition 0 is answered UNSTABLE_OFFSET_COMMIT, which librdkafka retries;
4. after 8 s the second member leaves, so the first's assignment changes while that
   retry is in flight. librdkafka 2.16.0 then puts partition 0 back on its pending list
   with OFFSET_INVALID and starts it at auto.offset.reset (earliest): offset 0, not 50.

``--workaround`` does what the worker does (worker.kafka.positions.assign_at_committed):
the on_assign callback asks for the committed offsets until they are stable and hands
``incremental_assign`` absolute positions. The open transaction is aborted at 15 s.

    .venv/bin/python -m tools.repro_unstable_offset [--workaround]   # needs a broker
Prints the first offset each member read per partition, and exits 1 when partition 0
was read from below its committed offset (the bug), 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

COMMITTED, HELD = 50, 60


def say(*parts: object) -> None:
    print(time.strftime("%X"), *parts, flush=True)


def member(bootstrap: str, group: str, name: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
        }
    )


def stable(c: Consumer, parts: list[TopicPartition]) -> list[TopicPartition]:
    while True:
        try:
            got = c.committed(parts, timeout=3)
        except KafkaException as exc:
            say("committed() raised", exc.args[0].name())
            continue
        if all(tp.error is None for tp in got):
            return list(got)
        say("committed():", [(tp.partition, tp.error.name()) for tp in got if tp.error])
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.repro_unstable_offset", description=__doc__)
    p.add_argument("--workaround", action="store_true", help="assign at stable offsets")
    p.add_argument("--seconds", type=float, default=40)
    args = p.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    tag = uuid.uuid4().hex[:8]
    topic, group = f"repro.{tag}", f"repro-g-{tag}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # held: the result needs it
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap})
    for part in (0, 1):
        for i in range(100):
            producer.produce(topic, f"{part}-{i}".encode(), partition=part)
    producer.flush()

    first = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    first.commit(offsets=[TopicPartition(topic, n, COMMITTED) for n in (0, 1)], asynchronous=False)
    meta = first.consumer_group_metadata()
    first.close()
    zombie = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"zombie-{tag}"}
        | {"transaction.timeout.ms": 60000}
    )
    zombie.init_transactions(10)
    zombie.begin_transaction()
    zombie.send_offsets_to_transaction([TopicPartition(topic, 0, HELD)], meta, 10)
    say(f"an open transaction holds offset {HELD} for partition 0; committed: {COMMITTED}")

    def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
        say("assigned", [tp.partition for tp in parts])
        if args.workaround and parts:
            c.incremental_assign(stable(c, parts))

    a, b = member(bootstrap, group, "a"), member(bootstrap, group, "b")
    for c in (a, b):
        c.subscribe([topic], on_assign=on_assign)
    threading.Timer(15, zombie.abort_transaction, args=(10,)).start()
    read: dict[tuple[str, int], int] = {}
    started, members = time.monotonic(), {"a": a, "b": b}
    while time.monotonic() - started < args.seconds:
        for name, c in list(members.items()):
            m: Any = c.poll(0.1)
            if m is not None and not m.error():
                read.setdefault((name, m.partition()), m.offset())
        if "b" in members and time.monotonic() - started > 8:
            say("b leaves; a holds", [tp.partition for tp in a.assignment()])
            members.pop("b").close()
    a.close()
    print("first offsets read:", dict(sorted(read.items())))
    early = {k: v for k, v in read.items() if v < COMMITTED}
    print("BUG: read below the committed offset:" if early else "ok: nothing read below", early)
    return 1 if early else 0


if __name__ == "__main__":
    sys.exit(main())
