"""`make demo` (``python -m tools.demo``): broker + topics + a model (trained on the spot
if missing) + the worker + the web console (``support-worker console``, its URL printed),
a sample of varied messages, and a live view of every route topic and the DLQ here too.

Ctrl-C stops the console, the worker and the broker this demo started. With
KAFKA_BOOTSTRAP_SERVERS set it uses that cluster and starts no broker. DEMO_CONSOLE_PORT
picks the console's port (default 8080).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer

from schemas.messages import ROUTES
from tools import KAFKA_TOOL, REPO, console_proc
from worker.kafka.clients import to_record
from worker.settings import TopicNames

MODELS = REPO / "models"
CURRENT = MODELS / "current"
ADMIN_PORT = 9400

SAMPLES: list[tuple[str, str | None]] = [
    ("Hi, I was charged twice for my subscription this month, can you check?", "calm billing"),
    ("WTF!!! My card got declined AGAIN at the store. FIX THIS NOW!", "declined, 'now'"),
    ("i cant log in to my acount, pasword reset isnt wroking", "typos"),
    ("WHERE IS MY REFUND FOR THE CANCELLED FLIGHT", "all caps"),
    ("just wondering what your opening hours are on sunday, thanks", "calm question"),
    ("This is ridiculous, someone stole my card and made purchases", "fraud, angry"),
    ("Ugh, the app keeps crashing when I open payments...", "app crash"),
    ("please cancel my hotel reservation for tomorrow", "refund"),
    ("   ", "empty text"),
    ("hola, ¿cómo cambio mi PIN? 🙂", "non-English, emoji"),
    ("Der Zug nach Hamburg hat heute wieder zwanzig Minuten Verspätung.", "off its ground"),
]
MALFORMED = b'{"message_id": "demo-malformed", "text": "missing the closing brace"'


WORKER_LOG = REPO / ".kafka" / "demo-worker.log"
CONSOLE_LOG = REPO / ".kafka" / "demo-console.log"
GROUP = "support-router-demo"


@dataclass(frozen=True)
class Child:
    """A process the demo started and watches: the worker, the console."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def say(msg: str) -> None:
    print(f"\033[1m==> {msg}\033[0m", flush=True)


def broker() -> tuple[str, bool]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        say(f"using the cluster at {external} (KAFKA_BOOTSTRAP_SERVERS)")
        return external, False
    running = subprocess.run([sys.executable, str(KAFKA_TOOL), "status"], capture_output=True)
    out = subprocess.run(
        [sys.executable, str(KAFKA_TOOL), "up"], stdout=subprocess.PIPE, text=True, check=True
    )
    return out.stdout.strip(), running.returncode != 0


def apply_topics(bootstrap: str, local: bool) -> None:
    cmd = [
        sys.executable,
        "-m",
        "worker.cli",
        "topics",
        "apply",
        "--bootstrap-servers",
        bootstrap,
        "--file",
        str(REPO / "deploy" / "topics.yaml"),
    ]
    if local:
        cmd += ["--replication-factor", "1"]
    subprocess.run(cmd, check=True, cwd=REPO)


def ensure_model() -> Path:
    from worker.model.artifact import read_manifest
    from worker.model.errors import ArtifactError

    if (CURRENT / "manifest.json").exists():
        try:
            read_manifest(CURRENT)
            say(f"model: {CURRENT.resolve()}")
            return CURRENT
        except ArtifactError as exc:  # e.g. an artifact of an older format: train anew
            say(f"models/current is not usable ({exc}); training a new one")
    from trainer.data import banking77, clinc

    clinc_path, b77_path = clinc.default_path(), banking77.default_path()
    out = MODELS / "demo"
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--preset", "demo", "--out", str(out)]
    if clinc_path is not None and clinc_path.exists():
        cmd += ["--clinc-path", str(clinc_path)]
        if b77_path is not None and b77_path.exists():
            cmd += ["--banking77-path", str(b77_path)]
        else:
            cmd += ["--sources", "clinc,definitions"]
        say(
            "no models/current: training MiniLM on CLINC150"
            + (" and Banking77" if "--banking77-path" in cmd else "")
            + " subsets, about 5-6 minutes on 2 CPU cores; progress below"
        )
    else:
        say("no models/current and no CLINC150 file: training MiniLM on synthetic messages")
        cmd += ["--source", "synthetic", "--synthetic-per-intent", "300"]
    subprocess.run(cmd, check=True, cwd=REPO)
    if CURRENT.is_symlink() or CURRENT.exists():
        CURRENT.unlink()
    CURRENT.symlink_to(out.name)
    return CURRENT


def demo_env(bootstrap: str) -> dict[str, str]:
    """The worker's and the console's: one cluster, the default topics, the demo's group."""
    return dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        SUPPORT_WORKER_MODEL__PATH=str(CURRENT),
        SUPPORT_WORKER_ADMIN_PORT=str(ADMIN_PORT),
        SUPPORT_WORKER_GROUP_ID=GROUP,
    )


def start_worker(bootstrap: str) -> subprocess.Popen[bytes]:
    env = demo_env(bootstrap)
    (REPO / ".kafka").mkdir(exist_ok=True)
    log = WORKER_LOG
    say(f"starting the worker (log: {log}, admin: http://127.0.0.1:{ADMIN_PORT}/metrics)")
    with log.open("wb") as fh:
        # Its own session: Ctrl-C in the terminal reaches only this demo, which then sends
        # the worker exactly one SIGTERM (a second signal would make it exit at once).
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the worker exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/readyz", timeout=2) as r:
                if r.status == 200:
                    say("worker ready: model warmed up, transactions initialized, subscribed")
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    sys.exit(f"the worker was not ready within 120 s; see {log}")


def sample_traceparent() -> str:
    """A W3C traceparent as a chat platform that traces would send: a trace of its own
    per message, and the id of the span that produced it (the worker continues it)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def produce_samples(bootstrap: str, topic: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    run = uuid.uuid4().hex[:6]
    for i, (text, _) in enumerate(SAMPLES):
        msg = {
            "message_id": f"demo-{run}-{i}",
            "conversation_id": f"conv-{i}",
            "text": text,
            "channel": "chat",
        }
        p.produce(
            topic,
            key=msg["conversation_id"].encode(),
            value=json.dumps(msg).encode(),
            headers=[("traceparent", sample_traceparent().encode())],
        )
    p.produce(topic, key=b"conv-bad", value=MALFORMED)
    p.flush(10)
    say(f"produced {len(SAMPLES)} messages and 1 malformed record to {topic}")


def start_console(bootstrap: str) -> Child:
    port = int(os.environ.get("DEMO_CONSOLE_PORT", "8080"))
    proc = console_proc.start(demo_env(bootstrap), CONSOLE_LOG, port=port)
    try:
        url = proc.wait_ready(60)
    except BaseException as exc:  # not ready, or Ctrl-C meanwhile: leave no console behind
        proc.stop()
        if isinstance(exc, RuntimeError):
            sys.exit(f"the console did not start ({exc}); DEMO_CONSOLE_PORT picks another port")
        raise
    print(f"\n\033[1;32m==> console: {url}\033[0m  (open it in a browser; log: {CONSOLE_LOG})\n")
    return Child("console", proc.proc, CONSOLE_LOG)


class ChildDiedError(Exception):
    """A process the demo started (the worker, the console) exited while it ran."""


def check_alive(children: list[Child]) -> None:
    """A view of a dead worker would show nothing, forever: say so and stop instead."""
    for child in children:
        code = child.proc.poll()
        if code is None:
            continue
        log = child.log
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        lines = "\n".join(f"    {line[:160]}" for line in tail)
        raise ChildDiedError(f"the {child.name} exited with {code}; last lines of {log}:\n{lines}")


def watch(
    bootstrap: str,
    topics: list[str],
    dlq: str,
    inbound: str,
    children: list[Child],
) -> None:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-view-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "latest",
        }
    )
    c.subscribe([*topics, dlq])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        check_alive(children)
        c.poll(0.2)  # be assigned (at the end of each topic) before anything is produced
    say("live view of " + ", ".join([*topics, dlq]) + " (Ctrl-C stops everything)")
    produce_samples(bootstrap, inbound)
    while True:
        check_alive(children)
        for m in c.consume(100, timeout=0.5):
            if m.error():
                continue
            rec = to_record(m)
            if rec.topic == dlq:
                h = {k: (v or b"").decode(errors="replace") for k, v in rec.headers}
                print(
                    f"  {'DLQ':<22} stage={h.get('x-error-stage')} type={h.get('x-error-type')}: "
                    f"{h.get('x-error-message', '')[:70]}",
                    flush=True,
                )
                continue
            v = json.loads(rec.value or b"{}")
            p = v["predictions"] or {}
            labels = " ".join(f"{h}={x['label']}({x['confidence']:.2f})" for h, x in p.items())
            text = v["message"]["text"].strip().replace("\n", " ")[:48] or "<empty>"
            print(
                f"  {m.topic():<22} {v['routing']['reason']:<15} {labels or '-':<95} {text}",
                flush=True,
            )


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    bootstrap, started_broker = broker()
    children: list[Child] = []
    code = 0
    try:
        apply_topics(
            bootstrap, local=started_broker or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        )
        ensure_model()
        children.append(Child("worker", start_worker(bootstrap), WORKER_LOG))
        children.append(start_console(bootstrap))
        topics = TopicNames()  # the defaults, as deploy/topics.yaml declares them
        names = [topics.for_route(route) for route in ROUTES]
        watch(bootstrap, names, topics.dlq, topics.inbound, children)
    except KeyboardInterrupt:
        print()
        say("stopping")
    except ChildDiedError as exc:
        say(str(exc))
        code = 1
    finally:
        for child in reversed(children):  # the console first: it reads what the worker writes
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
                try:
                    say(f"{child.name} exited with {child.proc.wait(60)}")
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    say(f"{child.name} ignored SIGTERM for 60 s: killed")
        if started_broker:
            subprocess.run([sys.executable, str(KAFKA_TOOL), "down"], check=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
