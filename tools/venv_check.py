"""Does a venv serve? A ``support-worker run`` from its interpreter, on the local broker.

Creates topics of its own, produces ``--messages`` inbound messages (every 50th one
malformed), starts the worker with the venv's Python on ``--model`` and ``--variant``,
reads what it committed (read_committed), stops it with SIGTERM and prints one JSON
summary: the venv's size on disk (``du -sb``), its package count, the variant the worker
served, and the messages routed and dead-lettered. Exit 1 if anything was missing.

    .venv/bin/python -m tools.venv_check --python /tmp/venv-default/bin/python \\
        --model runs/demo-variants --variant ov-int8-static
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tools import worker_proc

ROLES = ("inbound", "escalate", "auto_resolve", "more_info", "dlq")


def venv_facts(python: str) -> dict[str, Any]:
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    du = subprocess.run(["du", "-sb", prefix], capture_output=True, text=True, check=True)
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    packages = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    return {
        "venv": prefix,
        "venv_mb": round(int(du.stdout.split()[0]) / 1e6, 1),
        "packages": len(packages),
        "torch": packages.get("torch"),
        "train_extra_present": sorted(
            {"accelerate", "nncf", "onnx", "matplotlib"} & packages.keys()
        ),
    }


def make_topics(bootstrap: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    topics = {role: f"venv-check-{tag}-{role}" for role in ROLES}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, 2, 1) for t in topics.values()])
    for f in futures.values():
        f.result(30)
    return topics


def produce(bootstrap: str, topic: str, n: int) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    bad = 0
    for i in range(n):
        if i % 50 == 49:
            p.produce(topic, value=b"not json", key=f"bad-{i}".encode())
            bad += 1
        else:
            text = ["my card was declined", "where is my refund", "how do i reset my pin"][i % 3]
            p.produce(topic, value=json.dumps({"message_id": f"m{i}", "text": text}).encode())
    if p.flush(30):
        raise SystemExit("the producer could not deliver every message")
    return bad


def read_committed(
    bootstrap: str, topics: dict[str, str], expect: int, timeout: float
) -> dict[str, int]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"venv-check-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    outputs = [topics[r] for r in ROLES[1:]]
    c.subscribe(outputs)
    counts = dict.fromkeys(ROLES[1:], 0)
    role = {t: r for r, t in topics.items()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(counts.values()) < expect:
        for m in c.consume(500, timeout=0.5):
            if m.error() is None:
                counts[role[str(m.topic())]] += 1
    c.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.venv_check", description=__doc__)
    p.add_argument("--python", required=True, help="the venv's interpreter")
    p.add_argument("--model", type=Path, default=Path("models/current"))
    p.add_argument("--variant", default="auto")
    p.add_argument("--messages", type=int, default=1000)
    args = p.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    facts = venv_facts(args.python)
    topics = make_topics(bootstrap)
    bad = produce(bootstrap, topics["inbound"], args.messages)
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="venv-check-") as tmp:
        w = worker_proc.start(
            bootstrap,
            topics,
            args.model.resolve(),
            Path(tmp) / "worker.log",
            group=f"venv-check-{tag}",
            txn_id=f"venv-check-{tag}",
            settings={"model__variant": args.variant},
            python=args.python,
        )
        try:
            w.wait_ready(timeout=300)
            counts = read_committed(bootstrap, topics, args.messages, timeout=300)
        finally:
            w.signal(signal.SIGTERM)
            code = w.wait(60)
        served = [e for e in w.log_lines() if e.get("event") == "model_variant"]
    routed = sum(v for k, v in counts.items() if k != "dlq")
    report = {
        **facts,
        "variant": served[-1].get("variant") if served else None,
        "messages": args.messages,
        "routed": routed,
        "dead_letters": counts["dlq"],
        "by_topic": counts,
        "worker_exit": code,
    }
    print(json.dumps(report, indent=2))
    ok = routed == args.messages - bad and counts["dlq"] == bad and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
