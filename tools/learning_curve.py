"""The learning curve: how many agents' corrections it takes to learn traffic the model
never saw, with the review queue's pick against the same number drawn at random.

One command for any labelled traffic (docs/learning.md):

    python -m tools.learning_curve --start ARTIFACT --traffic traffic.jsonl \\
        --oracle oracle.jsonl --test banking77=b77-test.jsonl --test clinc=clinc-test.jsonl \\
        --n 100,250,500,1000,2000 --out runs/learning-curve

1. The traffic (inbound JSONL: message_id, text) is produced to a real broker and routed
   by a real worker (tools/worker_proc.py) serving ``--start``, with the review queue on.
2. A simulated agent answers, for each N: the review queue's first N in priority order
   (active), or N routed messages drawn at random (random). Its answers are the oracle
   file's labels (JSONL: message_id and the four heads), produced as Feedback records.
3. ``support-trainer feedback collect`` and ``support-trainer train --from --feedback``
   make a candidate from each, as an operator would.
4. Each candidate and the start are scored on every ``--test`` file (labelled JSONL):
   intent macro-F1, action accuracy, the share routed unfamiliar, false auto-resolves.

``python -m tools.learning_curve prepare`` writes the four files for Banking77 from the
trainer's splits (the model under test never trained on Banking77).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.labels import HEADS
from schemas.learning import Feedback, ReviewItem
from tools import worker_proc

REPO = Path(__file__).resolve().parents[1]
PICKS = ("active", "random")
ROLES = ("inbound", "escalate", "auto_resolve", "more_info", "dlq", "review", "feedback")


@dataclass(frozen=True)
class Routed:
    """What the worker made of the traffic: every result, and the review queue."""

    results: dict[str, dict[str, Any]]  # message_id -> routed result
    queue: list[ReviewItem]  # in the order an agent takes it: priority, highest first


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


# -- the broker ------------------------------------------------------------------------


def create_topics(bootstrap: str, tag: str, extra: Sequence[str] = ()) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    names = {r: f"lc.{r}.{tag}" for r in (*ROLES, *extra)}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=4 if r == "inbound" else 1, replication_factor=1)
            for r, n in names.items()
        ]
    )
    for f in futures.values():
        f.result(30)
    return names


def drop_topics(bootstrap: str, names: Sequence[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics(list(names)).values():
        f.result(30)


def produce(bootstrap: str, topic: str, values: Sequence[tuple[str, bytes]]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for n, (key, value) in enumerate(values):
        while True:
            try:
                p.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                p.poll(0.05)
        if n % 1000 == 0:
            p.poll(0)
    if p.flush(60):
        raise RuntimeError(f"could not deliver every record to {topic}")


def read_all(bootstrap: str, topics: Sequence[str], expect: int, timeout_s: float) -> list[Any]:
    """Every committed record of ``topics``; waits for ``expect``, then 3 s of quiet."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"lc-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(list(topics))
    out: list[Any] = []
    deadline, quiet = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error() is None:
                    out.append(m)
            if len(out) >= expect:
                quiet = quiet or time.monotonic() + 3
                if time.monotonic() > quiet:
                    break
    finally:
        c.close()
    return out


# -- the steps ------------------------------------------------------------------------------


def route(
    bootstrap: str,
    topics: dict[str, str],
    start: Path,
    traffic: list[dict[str, Any]],
    log_dir: Path,
    random_share: float,
) -> Routed:
    """Produce the traffic, route it with a real worker, read the results and the queue."""
    produce(
        bootstrap,
        topics["inbound"],
        [(m["message_id"], json.dumps(m).encode()) for m in traffic],
    )
    tag = uuid.uuid4().hex[:8]
    w = worker_proc.start(
        bootstrap,
        topics,
        start,
        log_dir / "worker.log",
        group=f"lc-{tag}",
        txn_id=f"lc-{tag}",
        settings={
            "review__enabled": "true",
            "review__random_share": str(random_share),
            # The experiment measures the pick, not the team's size: no rate bound.
            "review__max_per_minute": "1000000",
        },
    )
    try:
        w.wait_ready(timeout=600)
        outputs = [topics[r] for r in ("escalate", "auto_resolve", "more_info", "dlq")]
        records = read_all(bootstrap, outputs, len(traffic), timeout_s=1800)
    finally:
        w.signal(signal.SIGTERM)
        w.wait(60)
    results = {}
    for m in records:
        if m.topic() != topics["dlq"]:
            value = json.loads(m.value())
            results[value["message_id"]] = value
    queue = [
        ReviewItem.model_validate_json(m.value())
        for m in read_all(bootstrap, [topics["review"]], 0, timeout_s=60)
    ]
    queue.sort(key=lambda i: (-i.review.priority, i.result.message_id))
    return Routed(results, queue)


def choose(routed: Routed, pick: str, n: int, seed: int) -> list[str]:
    """The message ids a simulated agent labels: the queue's first n, or n at random."""
    if pick == "active":
        return [i.result.message_id for i in routed.queue[:n]]
    ids = sorted(routed.results)
    return random.Random(seed).sample(ids, min(n, len(ids)))


def feedback_values(
    ids: Sequence[str], routed: Routed, oracle: dict[str, dict[str, Any]]
) -> list[tuple[str, bytes]]:
    """The simulated agent's corrections, one a second in the order it answered them."""
    reasons = {i.result.message_id: i.review.reason for i in routed.queue}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for k, mid in enumerate(ids):
        labels = {h: oracle[mid][h] for h in HEADS if oracle[mid].get(h) is not None}
        fb = Feedback(
            schema_version=1,
            message_id=mid,
            labels=labels,
            agent_id="simulated-agent",
            model_version=routed.results[mid]["model"]["version"],
            at=start + timedelta(seconds=k),
            review_reason=reasons.get(mid),
        )
        out.append((mid, fb.model_dump_json(exclude_none=True).encode()))
    return out


def trainer(*args: str, env: dict[str, str] | None = None) -> None:
    command = [str(Path(sys.executable).with_name("support-trainer")), *args]
    print("$ support-trainer " + " ".join(args), flush=True)
    subprocess.run(command, check=True, cwd=REPO, env=env)


def score(model: Path, tests: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Per test file: intent macro-F1, action accuracy, unfamiliar share, false auto."""
    from trainer.data.records import read_labelled
    from trainer.evaluation import evaluate_sources, runtime
    from worker.model.artifact import load_artifact

    classifier = runtime(load_artifact(model))
    out = {}
    for name, path in tests.items():
        examples, _ = read_labelled(path)
        examples = [ex.__class__(**{**ex.to_json(), "collection": name}) for ex in examples]
        result = evaluate_sources(classifier, examples, "test").results[0]
        heads = result["heads"]
        out[name] = {
            "n": result["n"],
            "intent_macro_f1": heads["intent"]["macro_f1"],
            "action_accuracy": heads["action"]["accuracy"],
            "unfamiliar": result["routed"]["reasons"].get("unfamiliar", 0.0),
            "false_auto_resolve_rate": result["routed"]["false_auto_resolve_rate"],
        }
    return out


# -- the report ------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], tests: Sequence[str]) -> str:
    head = "| pick | N | " + " | ".join(
        f"{t} intent F1 | {t} action | {t} unfamiliar | {t} false auto" for t in tests
    )
    lines = [head + " | train s |", "|" + "---|" * (3 + 4 * len(tests))]
    for r in rows:
        cells = []
        for t in tests:
            s = r["scores"][t]
            cells += [
                f"{s['intent_macro_f1']:.3f}",
                f"{s['action_accuracy']:.3f}",
                f"{s['unfamiliar']:.1%}",
                f"{s['false_auto_resolve_rate']:.1%}",
            ]
        seconds = f"{r['train_s']:.0f}" if r.get("train_s") else ""
        lines.append(f"| {r['pick']} | {r['n']} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], test: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = next(r for r in rows if r["pick"] == "start")["scores"][test]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in (
        (axes[0], "intent_macro_f1", f"{test}: intent macro-F1"),
        (axes[1], "action_accuracy", f"{test}: action accuracy"),
    ):
        for pick, style in (("active", "o-"), ("random", "s--")):
            points = sorted((r["n"], r["scores"][test][metric]) for r in rows if r["pick"] == pick)
            if points:
                ax.plot(*zip(*points, strict=True), style, label=f"{pick} pick")
        ax.axhline(start[metric], color="grey", linestyle=":", label="start (no corrections)")
        ax.set_xscale("log")
        ax.set_xlabel("agents' corrections (N)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command -------------------------------------------------------------------------


@contextmanager
def topics_of_run(bootstrap: str, keep: bool) -> Iterator[dict[str, str]]:
    names = create_topics(bootstrap, uuid.uuid4().hex[:8])
    try:
        yield names
    finally:
        if not keep:
            drop_topics(bootstrap, list(names.values()))


def run(args: argparse.Namespace) -> int:
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tests = dict(_named(t) for t in args.test)
    traffic = read_jsonl(args.traffic)
    oracle = {row["message_id"]: row for row in read_jsonl(args.oracle)}
    ns = [int(n) for n in args.n.split(",")]
    rows: list[dict[str, Any]] = [{"pick": "start", "n": 0, "scores": score(args.start, tests)}]
    print(table(rows, list(tests)), flush=True)
    with topics_of_run(bootstrap, args.keep_topics) as topics:
        began = time.monotonic()
        routed = route(bootstrap, topics, args.start, traffic, out, args.random_share)
        reasons: dict[str, int] = {}
        for v in routed.results.values():
            reasons[v["routing"]["reason"]] = reasons.get(v["routing"]["reason"], 0) + 1
        print(
            f"routed {len(routed.results)} of {len(traffic)} messages in "
            f"{time.monotonic() - began:.0f}s; reasons {reasons}; review queue "
            f"{len(routed.queue)}",
            flush=True,
        )
        for pick in args.picks.split(","):
            for n in ns:
                ids = [i for i in choose(routed, pick, n, args.seed) if i in oracle]
                run_dir = out / f"{pick}-{n}"
                # A data set is bound to the collector's group, and each run has its own
                # topics and group: what an earlier run left here is stale.
                shutil.rmtree(run_dir, ignore_errors=True)
                feedback_topic = f"{topics['feedback']}.{pick}-{n}"
                create_feedback_topic(bootstrap, feedback_topic)
                try:
                    produce(bootstrap, feedback_topic, feedback_values(ids, routed, oracle))
                    env = worker_proc.worker_env(
                        bootstrap,
                        {**topics, "feedback": feedback_topic},
                        args.start,
                        group="unused",
                        txn_id="unused",
                    )
                    trainer(
                        "feedback",
                        "collect",
                        "--out",
                        str(run_dir / "feedback"),
                        "--group",
                        f"lc-collect-{uuid.uuid4().hex[:8]}",
                        env=env,
                    )
                    began = time.monotonic()
                    trainer(
                        "train",
                        "--from",
                        str(args.start),
                        "--feedback",
                        str(run_dir / "feedback"),
                        "--holdout-share",
                        "0",
                        "--out",
                        str(run_dir / "model"),
                        *args.train_args.split(),
                    )
                    train_s = time.monotonic() - began
                finally:
                    if not args.keep_topics:
                        drop_topics(bootstrap, [feedback_topic])
                row = {
                    "pick": pick,
                    "n": n,
                    "labelled": len(ids),
                    "train_s": train_s,
                    "scores": score(run_dir / "model", tests),
                }
                rows.append(row)
                (out / "learning_curve.json").write_text(json.dumps(rows, indent=2) + "\n")
                print(table(rows, list(tests)), flush=True)
    first = next(iter(tests))
    plot(rows, first, out / "learning_curve.png")
    print(f"\nwrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")
    return 0


def create_feedback_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]).values():
        f.result(30)


def _named(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        raise SystemExit(f"--test {text!r}: expected NAME=FILE")
    return name, Path(path)


def prepare(args: argparse.Namespace) -> int:
    """traffic, oracle and test files for Banking77 (and CLINC's test) from the splits."""
    from trainer.data.records import read_labelled

    data: Path = args.data_dir
    out: Path = args.out
    train, _ = read_labelled(data / "train.jsonl")
    test, _ = read_labelled(data / f"{args.test_split}.jsonl")
    seen: set[str] = set()
    traffic: list[dict[str, Any]] = []
    oracle: list[dict[str, Any]] = []
    for ex in train:
        if ex.collection != "banking77" or ex.text in seen:
            continue
        seen.add(ex.text)
        mid = f"b77-{len(traffic):05d}"
        traffic.append({"message_id": mid, "text": ex.text})
        oracle.append({"message_id": mid, **{h: ex.label(h) for h in HEADS}})
    write_jsonl(out / "traffic.jsonl", traffic)
    write_jsonl(out / "oracle.jsonl", oracle)
    for name in ("banking77", "clinc"):
        rows = [ex.to_json() for ex in test if ex.collection == name]
        write_jsonl(out / f"{name}-test.jsonl", rows)
        print(f"{name}-test.jsonl: {len(rows)} rows")
    print(f"traffic.jsonl and oracle.jsonl: {len(traffic)} Banking77 messages")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.learning_curve", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("prepare", help="Banking77 traffic/oracle/test files from the splits")
    p.add_argument("--data-dir", type=Path, required=True, help="support-trainer build-data's")
    p.add_argument("--test-split", default="test_noisy")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=prepare)
    r = sub.add_parser("run", help="route, answer the queue, learn and score at each N")
    r.add_argument("--start", type=Path, required=True, help="the starting artifact")
    r.add_argument("--traffic", type=Path, required=True, help="inbound JSONL")
    r.add_argument("--oracle", type=Path, required=True, help="JSONL: message_id + heads")
    r.add_argument("--test", action="append", required=True, metavar="NAME=FILE")
    r.add_argument("--n", default="100,250,500,1000,2000")
    r.add_argument("--picks", default="active,random")
    r.add_argument("--random-share", type=float, default=0.05)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--train-args", default="", help="more `support-trainer train` flags")
    r.add_argument("--bootstrap", help="default KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092")
    r.add_argument("--keep-topics", action="store_true")
    r.add_argument("--out", type=Path, required=True)
    r.set_defaults(handler=run)
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
