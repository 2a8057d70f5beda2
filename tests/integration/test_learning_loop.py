"""The learning loop end to end on the real broker, as docs/learning.md runs it.

Route with the review queue on -> label queued messages in the console's review page
(Chromium, by keys) and through its HTTP API -> `feedback collect` -> `train --from`
(the tiny smoke model) -> `compare` -> a candidate in shadow -> `promote` under a steady
flow -> roll back. Every process is the real one (workers, the console, each
`support-trainer` command as a subprocess) and every step asserts what it produced.
Counting is by message_id with read_committed readers, so a lost and a doubled record
both fail.

The traffic is the synthetic generator's texts, decorated as the trainer's augmentation
does and labelled by the trainer's heuristics: those labels are the oracle an agent
would give, and the corrections the test submits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from schemas.labels import HEADS
from schemas.learning import Feedback, ReviewItem, ShadowResult
from tests.integration.console.conftest import Pipeline, console_on, read_all
from tests.integration.worker.harness import (
    Topics,
    WorkerProc,
    committed_reader,
    make_topics,
    read_committed,
    running_worker,
    version_runs,
    wait_for_event,
)
from tools import REPO, browser
from tools.console_proc import ConsoleProc
from trainer.augmentation import augment, example_rng
from trainer.data import synthetic
from trainer.data.records import Example, with_heuristics

SUPPORT_TRAINER = Path(sys.executable).parent / "support-trainer"
EXIT_REJECTED = 3  # compare: the candidate fails the promotion rule (trainer/cli.py)
AGENT_KEY = b"learning-loop-agent-key-0123456789"
AGENT = "agent-7"
# What the keyed console records for AGENT (worker/console/agents.py): a pseudonym.
AGENT_ID = "a-" + hmac.new(AGENT_KEY, AGENT.encode(), hashlib.sha256).hexdigest()[:20]
# The review page's keys, one per label in the head's label order (console.js, KEYS).
PAGE_KEYS = {"intent": "12345", "urgency": "qwe", "sentiment": "asd", "action": "zxc"}
MODEL_LABEL = '[data-head="%s"] button.model'
QUEUED = "return [...document.querySelectorAll('#queue li')].map((li) => li.dataset.id)"
ROUTED = 360  # step 3's traffic: enough random picks at a share of 0.3 to label
CORRECTIONS = 60  # through the API, besides the one labelled in the browser
SHADOWED = 120
FLOW_WAVE = 10  # step 9: messages per wave of the steady flow, a wave every 0.1 s
CHECKED = 40  # step 9: messages after each swap that must carry the new version


# -- the traffic and its oracle ---------------------------------------------------------


def labelled_traffic(n: int, seed: int = 7) -> list[Example]:
    """``n`` distinct texts with their heuristic labels, from another seed than the smoke
    model's (42). Distinct, because the review queue skips near-copies."""
    rows = [row for split in synthetic.generate(100, seed).values() for row in split]
    out: dict[str, Example] = {}
    for i, (text, intent) in enumerate(rows):
        final = augment(text, example_rng(seed, "learning-loop", i))
        out.setdefault(final, with_heuristics(final, intent))
    assert len(out) >= n, f"only {len(out)} distinct texts"
    return list(out.values())[:n]


def message(prefix: str, i: int, example: Example) -> dict[str, Any]:
    return {
        "message_id": f"{prefix}-{i}",
        "conversation_id": f"c{i % 53}",
        "customer_id": f"cust-{i % 41}",
        "text": example.text,
    }


def oracle_labels(example: Example) -> dict[str, str]:
    return {head: str(example.label(head)) for head in HEADS}


def produce_messages(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for msg in messages:
        p.produce(topic, key=msg["conversation_id"].encode(), value=json.dumps(msg).encode())
    assert p.flush(30) == 0


def wait_metric(w: WorkerProc, name: str, at_least: float, timeout: float = 120) -> float:
    """The worker's metric once it reached ``at_least``: it moves just after the commit
    that made its records visible. Its value then, so that a count above fails."""
    deadline = time.monotonic() + timeout
    while (value := w.metric(name)) < at_least:
        assert w.proc.poll() is None and time.monotonic() < deadline, f"{name}={value}: {w.tail()}"
        time.sleep(0.2)
    return value


def ends(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Each topic's end offset per partition."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        out = {}
        for topic in topics:
            partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
            out[topic] = [
                c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in sorted(partitions)
            ]
        return out
    finally:
        c.close()


# -- support-trainer as a subprocess ----------------------------------------------------


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any SUPPORT_WORKER_*, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_WORKER_")}
    return env | {f"SUPPORT_WORKER_{k.upper()}": v for k, v in settings.items()}


def support_trainer(
    *args: str, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SUPPORT_TRAINER), *args],
        cwd=REPO,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if ok:
        assert done.returncode == 0, f"support-trainer {args}:\n{done.stdout}\n{done.stderr}"
    return done


def manifest(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


# -- the console ------------------------------------------------------------------------


def review_queue(console: ConsoleProc, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """GET /api/review/queue (all of it) until ``ready`` says the console read enough."""
    deadline = time.monotonic() + 60
    while True:
        status, body = console.get("api/review/queue?limit=500")
        assert status == 200, body
        if ready(body):
            return dict(body)
        assert time.monotonic() < deadline, f"the review queue never got there: {body}"
        time.sleep(0.2)


def label_in_the_browser(console: ConsoleProc, oracle: dict[str, Example]) -> str:
    """The first queued message the model got wrong (j moves down the queue), labelled
    with the page's keys and sent with Enter, as an agent does; returns its message_id."""
    driver = browser.chrome()
    try:
        driver.get(console.url)
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "tab-review-link").is_displayed()
        )
        driver.find_element(By.ID, "tab-review-link").click()
        queue = driver.find_element(By.ID, "queue")
        WebDriverWait(driver, 30).until(lambda _: queue.find_elements(By.TAG_NAME, "li"))
        driver.find_element(By.ID, "agent-name").send_keys(AGENT)
        driver.find_element(By.ID, "agent-save").click()
        item = driver.find_element(By.ID, "review-item")
        keys = ActionChains(driver)
        for _ in range(len(driver.execute_script(QUEUED))):
            message_id = str(item.get_attribute("data-message-id"))
            want = oracle_labels(oracle[message_id])
            model = {h: driver.find_element(By.CSS_SELECTOR, MODEL_LABEL % h) for h in HEADS}
            wrong = [h for h in HEADS if model[h].get_attribute("data-label") != want[h]]
            if wrong:
                break
            keys.send_keys("j").perform()
        assert wrong, "the model got every message in the page's list right"
        for head, label in want.items():
            keys.send_keys(PAGE_KEYS[head][HEADS[head].index(label)]).perform()
        # The page marks what the keys changed: the heads the model got wrong, no other.
        marked = driver.find_elements(By.CSS_SELECTOR, "[data-head] .corrected")
        assert len(marked) == len(wrong)
        chosen = {
            head: driver.find_element(
                By.CSS_SELECTOR, f'[data-head="{head}"] button.chosen'
            ).get_attribute("data-label")
            for head in HEADS
        }
        assert chosen == want
        keys.send_keys(Keys.ENTER).perform()
        WebDriverWait(driver, 30).until(lambda d: message_id not in d.execute_script(QUEUED))
        status = driver.find_element(By.ID, "review-status").text
        assert f"Sent for {message_id} as {AGENT_ID}" in status, status
        return message_id
    finally:
        driver.quit()


def post_correction(console: ConsoleProc, message_id: str, labels: dict[str, str]) -> None:
    """What the page sends for one message (POST /api/review/feedback/{message_id})."""
    req = urllib.request.Request(
        console.url + f"api/review/feedback/{message_id}",
        data=json.dumps({"agent": AGENT, "labels": labels}).encode(),
        headers={"Content-Type": "application/json"},
    )
    status, body = console._call(req, timeout=20)
    assert (status, body["status"]) == (200, "sent"), body


# -- reading and traffic for the swaps --------------------------------------------------


class RouteReader:
    """One read_committed reader of the route topics and the DLQ that keeps what it read:
    step 9 waits on it between swaps and counts on it at the end."""

    def __init__(self, bootstrap: str, topics: Topics, prefix: str) -> None:
        self.consumer: Consumer = committed_reader(bootstrap)
        self.consumer.subscribe(topics.outputs())
        self.dlq = topics.dlq
        self.prefix = prefix + "-"
        self.results: list[tuple[dict[str, Any], Message]] = []  # this prefix's only
        self.dead: list[bytes | None] = []
        self.seen: set[str] = set()

    def poll(self) -> bool:
        msgs = self.consumer.consume(500, timeout=0.2)
        for m in msgs:
            assert m.error() is None, m.error()
            if m.topic() == self.dlq:
                self.dead.append(m.key())
                continue
            value = json.loads(m.value() or b"{}")
            if value["message_id"].startswith(self.prefix):
                self.results.append((value, m))
                self.seen.add(value["message_id"])
        return bool(msgs)

    def wait_for(self, ids: set[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.seen:
            assert time.monotonic() < deadline, f"not routed: {sorted(ids - self.seen)[:10]}"
            self.poll()

    def settle(self, quiet_s: float = 3) -> None:
        """Reads on until nothing came for ``quiet_s``: a duplicate would arrive now."""
        quiet = time.monotonic() + quiet_s
        while time.monotonic() < quiet:
            if self.poll():
                quiet = time.monotonic() + quiet_s

    def versions(self) -> dict[str, str]:
        return {v["message_id"]: v["model"]["version"] for v, _ in self.results}

    def close(self) -> None:
        self.consumer.close()


class Flow:
    """Messages in small waves until stopped, from a thread. ``mark()`` is the index of
    the first message produced after it returned: a wave takes its indices under the
    lock before it produces."""

    def __init__(self, bootstrap: str, topic: str, prefix: str, pool: list[Example]) -> None:
        self.bootstrap, self.topic, self.prefix, self.pool = bootstrap, topic, prefix, pool
        self.next = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
            while not self.stopping.is_set():
                with self.lock:
                    first = self.next
                    self.next += FLOW_WAVE
                for i in range(first, first + FLOW_WAVE):
                    msg = message(self.prefix, i, self.pool[i % len(self.pool)])
                    p.produce(
                        self.topic, key=msg["conversation_id"].encode(), value=json.dumps(msg)
                    )
                assert p.flush(30) == 0
                time.sleep(0.1)
        except BaseException as exc:  # re-raised in the test by stop()
            self.error = exc

    def mark(self) -> int:
        with self.lock:
            return self.next

    def ids(self, first: int, end: int) -> set[str]:
        return {f"{self.prefix}-{i}" for i in range(first, end)}

    def stop(self) -> int:
        """Stops producing; how many were produced in all."""
        self.stopping.set()
        self.thread.join(60)
        if self.error is not None:
            raise self.error
        return self.next


# -- the test ---------------------------------------------------------------------------


def test_agents_corrections_become_a_model_that_is_shadowed_promoted_and_rolled_back(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    smoke_artifact: Path,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_bootstrap
    pool = labelled_traffic(ROUTED)

    # Step 1: a models directory serving the smoke artifact.
    models = tmp_path / "models"
    support_trainer("promote", "--models", str(models), str(smoke_artifact))
    old = manifest(smoke_artifact / "manifest.json")["version"]
    assert (models / "current").readlink() == Path(old)

    # Step 2: topics of the test's own.
    topics = make_topics(make_topic)
    learning = {role: make_topic(role, 1) for role in ("review", "feedback", "shadow")}

    with running_worker(
        bootstrap,
        topics,
        models / "current",
        tmp_path,
        topics__review=learning["review"],
        review__enabled="true",
        review__random_share="0.3",
        review__max_per_minute="100000",
        model__watch_s="0.3",
    ) as serving:
        # Step 3: route labelled traffic; the review queue takes its share.
        sent = [message("m", i, ex) for i, ex in enumerate(pool)]
        oracle = {msg["message_id"]: ex for msg, ex in zip(sent, pool, strict=True)}
        customers = {msg["message_id"]: msg["customer_id"] for msg in sent}
        produce_messages(bootstrap, topics.inbound, sent)
        got = read_committed(bootstrap, topics, len(sent))
        routed = Counter(v["message_id"] for _, v, _ in got.results)
        assert routed == Counter(list(oracle)) and not got.dead
        items = [
            ReviewItem.model_validate_json(v) for _, v in read_all(bootstrap, learning["review"])
        ]
        queued = {i.result.message_id: i for i in items}
        queued_total = wait_metric(serving, "support_review_queued_total", len(items))
        assert len(queued) == len(items) == queued_total
        assert len(items) > CORRECTIONS, f"only {len(items)} queued"
        assert set(queued) <= set(oracle)
        assert {i.result.model.version for i in items} == {old}

        # Step 4: agents label queued messages, one in the browser, the rest by the API.
        key_file = tmp_path / "agent.key"
        key_file.write_bytes(AGENT_KEY + b"\n")
        group = next(e for e in serving.log_lines() if e.get("event") == "starting")
        pipeline = Pipeline(bootstrap, topics, group["settings"]["group_id"])
        args = ("--review", "--agent-key-file", str(key_file))
        with console_on(pipeline, tmp_path, *args, topics=learning) as console:
            review_queue(console, lambda q: q["size"] == len(items))
            by_keys = label_in_the_browser(console, oracle)
            rest = review_queue(console, lambda q: q["size"] == len(items) - 1)["items"]
            assert by_keys not in {i["message_id"] for i in rest}
            by_api = [i["message_id"] for i in rest[:CORRECTIONS]]
            for message_id in by_api:
                post_correction(console, message_id, oracle_labels(oracle[message_id]))
        corrected = {by_keys, *by_api}
        records = read_all(bootstrap, learning["feedback"])
        feedback = [Feedback.model_validate_json(v) for _, v in records]
        assert [k.decode() for k, _ in records if k] == [f.message_id for f in feedback]
        assert Counter(f.message_id for f in feedback) == Counter(corrected)
        for f in feedback:
            assert (f.agent_id, f.model_version) == (AGENT_ID, old)
            assert f.labels.given() == oracle_labels(oracle[f.message_id])
            assert f.review_reason == queued[f.message_id].review.reason

        # Step 5: collect, twice: the second run adds nothing.
        fb = tmp_path / "feedback-data"
        kafka = clean_env(
            kafka__bootstrap_servers=bootstrap,
            **{f"topics__{role}": name for role, name in topics.roles().items()},
            topics__review=learning["review"],
            topics__feedback=learning["feedback"],
        )
        collect = ("feedback", "collect", "--out", str(fb), "--group", f"fb-{uuid.uuid4().hex}")
        support_trainer(*collect, env=kafka)
        rows = {
            r["message_id"]: r
            for r in map(json.loads, (fb / "dataset.jsonl").read_text().splitlines())
        }
        assert set(rows) == corrected
        for message_id, row in rows.items():
            want = oracle[message_id]
            assert (row["text"], row["customer_id"]) == (want.text, customers[message_id])
            assert {h: row[h] for h in HEADS} == oracle_labels(want)
        collected = manifest(fb / "manifest.json")
        fingerprint = collected["fingerprint"]
        assert fingerprint == hashlib.sha256((fb / "dataset.jsonl").read_bytes()).hexdigest()
        assert collected["counts"]["examples"] == len(corrected)
        again = support_trainer(*collect, env=kafka).stdout
        assert manifest(fb / "manifest.json")["fingerprint"] == fingerprint
        assert "0 new record(s)" in again, again

        # Step 6: learn from them, warm-started from the serving model.
        candidate = tmp_path / "candidate"
        support_trainer(
            "train",
            "--from",
            str(models / "current"),
            "--feedback",
            str(fb),
            "--out",
            str(candidate),
            "--no-variants",
        )
        child = manifest(candidate / "manifest.json")
        new = child["version"]
        assert new != old
        assert child["lineage"]["parent"]["version"] == old
        assert child["lineage"]["feedback"]["fingerprint"] == fingerprint
        counts = child["lineage"]["counts"]
        held_back = math.ceil(len(corrected) * child["lineage"]["feedback"]["holdout_share"])
        assert counts["feedback_held_back"] == held_back
        assert (
            counts["feedback_train"] + counts["feedback_validation"] == len(corrected) - held_back
        )

        # Step 7: the gate. Whichever verdict, the exit code must say the same.
        scores = tmp_path / "compare.json"
        done = support_trainer(
            "compare",
            "--current",
            str(models / "current"),
            "--candidate",
            str(candidate),
            "--feedback",
            str(fb),
            "--json",
            str(scores),
            ok=False,
        )
        assert done.returncode in (0, EXIT_REJECTED), done.stdout + done.stderr
        promote = done.returncode == 0
        [verdict] = [line for line in done.stdout.splitlines() if line.startswith("verdict: ")]
        assert verdict.startswith("verdict: PROMOTE" if promote else "verdict: REJECT")
        assert "| set | n | measure | current | candidate | change |" in done.stdout
        judged = manifest(scores)
        assert judged["verdict"]["promote"] is promote
        assert (judged["current"]["version"], judged["candidate"]["version"]) == (old, new)
        recent = [s for s in judged["sets"] if s["kind"] == "recent"]
        assert [s["current"]["n"] for s in recent] == [held_back]

        # Step 8: the candidate in shadow on traffic of its own; it writes nowhere else.
        shadow_in = make_topic("shadow-in", 2)
        shadow_topics = Topics(shadow_in, *topics.outputs())
        before = ends(bootstrap, topics.outputs())
        fresh = [message("s", i, pool[-1 - i]) for i in range(SHADOWED)]
        produce_messages(bootstrap, shadow_in, fresh)
        with running_worker(
            bootstrap,
            shadow_topics,
            models / "current",
            tmp_path,
            topics__shadow=learning["shadow"],
            shadow__candidate=str(candidate),
        ) as shadow:
            compared = wait_metric(shadow, 'support_shadow_compared_total{head="intent"}', SHADOWED)
            started = next(e for e in shadow.log_lines() if e.get("event") == "starting")
        assert started["settings"]["group_id"].endswith("-shadow")
        # Read after the shadow worker stopped: whatever it wrote is there, doubles too.
        shadowed = [
            ShadowResult.model_validate_json(v) for _, v in read_all(bootstrap, learning["shadow"])
        ]
        assert Counter(r.result.message_id for r in shadowed) == Counter(
            m["message_id"] for m in fresh
        )
        assert {r.result.model.version for r in shadowed} == {new}
        assert {r.serving.model.version for r in shadowed} == {old}
        assert compared == SHADOWED
        after = ends(bootstrap, topics.outputs())
        assert after == before, "the shadow worker wrote to a route topic or the DLQ"

        # Step 9: promote under a steady flow, then roll back. The candidate goes live
        # whatever compare said: this checks the swap, not the model.
        reader = RouteReader(bootstrap, topics, "f")
        flow = Flow(bootstrap, topics.inbound, "f", pool)
        flow.thread.start()
        try:
            reader.wait_for(flow.ids(0, 2 * FLOW_WAVE))  # the old version routes some first
            support_trainer("promote", "--models", str(models), str(candidate))
            wait_for_event(serving, "model_swapped", 1)
            # Produced after the swap was logged, and routed before the rollback starts:
            # the candidate's, every one.
            swapped = flow.mark()
            reader.wait_for(flow.ids(swapped, swapped + CHECKED))
            support_trainer("promote", "--models", str(models), old)
            wait_for_event(serving, "model_swapped", 2)
            rolled_back = flow.mark()  # from here on: the old version's
            reader.wait_for(flow.ids(rolled_back, rolled_back + CHECKED))
        finally:
            produced = flow.stop()
        try:
            reader.wait_for(flow.ids(0, produced))
            reader.settle()
        finally:
            reader.close()
        swaps = [e for e in serving.log_lines() if e.get("event") == "model_swapped"]

    assert [(e["from_version"], e["to_version"]) for e in swaps] == [(old, new), (new, old)]
    ids = Counter(v["message_id"] for v, _ in reader.results)
    assert set(ids) == flow.ids(0, produced), "lost"
    assert max(ids.values()) == 1, "doubled"
    assert not reader.dead
    versions = reader.versions()
    assert {versions[i] for i in flow.ids(swapped, swapped + CHECKED)} == {new}
    assert {versions[i] for i in flow.ids(rolled_back, produced)} == {old}
    runs = version_runs(reader.results)
    assert runs <= {(old, new, old), (old, new), (new, old), (old,), (new,)}
    assert (old, new, old) in runs
    listing = support_trainer("models", "--models", str(models)).stdout
    assert f"* {old}" in listing and new in listing
    promotions = (models / "promotions.jsonl").read_text().splitlines()
    assert [(p["from"], p["to"]) for p in map(json.loads, promotions)] == [
        (None, old),
        (old, new),
        (new, old),
    ]
