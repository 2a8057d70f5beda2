"""The worker's side of the learning loop on the real broker: the review queue, a hot swap
of model versions under load (promote, a broken candidate, roll back), and shadow.

Counting is by message_id with read_committed readers, so a lost and a doubled record
both fail these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from schemas.learning import ReviewItem, ShadowResult
from tests.integration.worker.harness import (
    committed_reader,
    make_topics,
    message,
    produce,
    read_committed,
    running_worker,
    version_runs,
    wait_for_event,
)
from worker.review import drawn


def read_topic(bootstrap: str, topic: str, settle_s: float = 3, timeout: float = 60) -> list[Any]:
    """Every committed record of ``topic``, read until nothing new came for ``settle_s``."""
    c: Consumer = committed_reader(bootstrap)
    c.subscribe([topic])
    out: list[Any] = []
    deadline, quiet = time.monotonic() + timeout, time.monotonic() + settle_s + 5
    while time.monotonic() < min(deadline, quiet):
        msgs = c.consume(500, timeout=0.5)
        for m in msgs:
            assert m.error() is None, m.error()
            out.append(m)
        if msgs:
            quiet = time.monotonic() + settle_s
    c.close()
    return out


def versioned(source: Path, models: Path, version: str) -> Path:
    """A copy of an artifact under models/<version>/, its manifest naming that version."""
    out = models / version
    shutil.copytree(source, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["version"] = version
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def point(models: Path, version: str) -> None:
    """What `support-trainer promote` does to the pointer: an atomic rename of a link."""
    tmp = models / ".current.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(version)
    os.replace(tmp, models / "current")


def test_the_review_queue_takes_every_uncertain_question_once_in_the_batch_transaction(
    kafka_bootstrap: str, make_topic: Any, smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic)
    review = make_topic("review", 2)
    n = 600
    good, _ = produce(kafka_bootstrap, topics.inbound, n)
    with running_worker(
        kafka_bootstrap,
        topics,
        smoke_artifact,
        tmp_path,
        topics__review=review,
        review__enabled="true",
        review__random_share="0.2",
        review__max_per_minute="100000",
    ) as w:
        got = read_committed(kafka_bootstrap, topics, n)
        queued_metric = w.metric("support_review_queued_total")
    routed = {v["message_id"]: v for _, v, _ in got.results}
    assert set(routed) == good
    items = [ReviewItem.model_validate_json(m.value()) for m in read_topic(kafka_bootstrap, review)]
    ids = Counter(i.result.message_id for i in items)
    assert items and max(ids.values()) == 1  # exactly once, also across retries
    assert queued_metric == len(items)
    for i in items:
        assert i.result.model_dump(mode="json") == routed[i.result.message_id]
        if i.review.reason == "random":
            assert drawn(i.result.message_id, 0.2) and i.review.weight == 5.0
            assert i.result.routing.reason not in ("unfamiliar", "low_confidence")
        else:
            assert i.review.reason == i.result.routing.reason
    # Diversity: the harness's traffic repeats 7 texts; each uncertain one is queued once.
    uncertain = [i for i in items if i.review.reason != "random"]
    texts = Counter(i.result.message["text"] for i in uncertain)
    assert max(texts.values()) == 1
    wanted = {
        v["message"]["text"]
        for v in routed.values()
        if v["routing"]["reason"] in ("unfamiliar", "low_confidence")
    }
    assert set(texts) == wanted
    randoms = [i for i in items if i.review.reason == "random"]
    confident = [m for m, v in routed.items() if v["routing"]["reason"] == "model"]
    assert len(randoms) == sum(drawn(m, 0.2) for m in confident)


def _wait_for_batches(w: Any, n: int, timeout: float = 60) -> None:
    """Until the worker has committed ``n`` more batches than now."""
    start = w.metric("support_batches_total")
    deadline = time.monotonic() + timeout
    while w.metric("support_batches_total") < start + n:
        assert time.monotonic() < deadline, f"fewer than {n} batches in {timeout} s"
        time.sleep(0.1)  # each scrape renders every metric: about 10 a second


def test_a_worker_swaps_versions_under_load_and_a_broken_one_leaves_the_old_serving(
    kafka_bootstrap: str, make_topic: Any, smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic)
    models = tmp_path / "models"
    models.mkdir()
    versioned(smoke_artifact, models, "v1")
    versioned(smoke_artifact, models, "v2")
    broken = versioned(smoke_artifact, models, "v3-broken")
    with (broken / "model.safetensors").open("r+b") as fh:
        fh.truncate(1000)
    point(models, "v1")
    wave = 300
    produced: list[int] = [0]
    done = threading.Event()

    def traffic() -> None:  # a steady flow while the pointer moves, and a wave after
        while True:
            last = done.is_set()
            produce_from(kafka_bootstrap, topics.inbound, produced[0], wave)
            produced[0] += wave
            if last:
                return
            time.sleep(0.2)

    with running_worker(
        kafka_bootstrap,
        topics,
        models / "current",
        tmp_path,
        model__watch_s="0.3",
    ) as w:
        flow = threading.Thread(target=traffic)
        flow.start()
        time.sleep(1.5)
        point(models, "v2")  # promote
        wait_for_event(w, "model_swapped", 1)
        # v2 must route some batches before the pointer moves on: a flight begun before
        # the swap still carries v1, and a fast reload could otherwise leave v2 none.
        _wait_for_batches(w, 3)
        point(models, "v3-broken")  # a candidate that cannot load
        wait_for_event(w, "model_swap_failed", 1)
        point(models, "v1")  # roll back
        wait_for_event(w, "model_swapped", 2)
        time.sleep(1.0)
        done.set()
        flow.join()
        got = read_committed(kafka_bootstrap, topics, produced[0], timeout=180)
        swaps = {
            "swapped": w.metric('support_model_swaps_total{outcome="swapped"}'),
            "failed": w.metric('support_model_swaps_total{outcome="failed"}'),
        }
        failed = [e for e in w.log_lines() if e.get("event") == "model_swap_failed"]
    ids = Counter(v["message_id"] for _, v, _ in got.results)
    assert max(ids.values()) == 1, "doubled"
    assert set(ids) == {f"m{i}" for i in range(produced[0])}, "lost"
    assert swaps == {"swapped": 2.0, "failed": 1.0}
    assert len(failed) == 1 and failed[0]["serving"] == "v2"
    assert "weights_sha256" in failed[0]["error"]
    # Each result carries the version that routed it, in its body and its header; per
    # partition, in offset order, the versions run v1 ... v2 ... v1.
    runs = version_runs((value, msg) for _, value, msg in got.results)
    assert runs <= {("v1", "v2", "v1"), ("v1", "v2"), ("v2", "v1"), ("v1",), ("v2",)}
    assert ("v1", "v2", "v1") in runs
    assert "v3-broken" not in {v["model"]["version"] for _, v, _ in got.results}


def produce_from(bootstrap: str, topic: str, first: int, n: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for i in range(first, first + n):
        msg = message(i)
        p.produce(topic, key=msg["conversation_id"].encode(), value=json.dumps(msg).encode())
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(30) == 0


def test_a_candidate_in_shadow_writes_only_to_the_shadow_topic_with_its_agreement(
    kafka_bootstrap: str, make_topic: Any, smoke_artifact: Path, tmp_path: Path
) -> None:
    topics = make_topics(make_topic)
    shadow = make_topic("shadow", 2)
    candidate = versioned(smoke_artifact, tmp_path, "candidate")
    n = 300
    good, _ = produce(kafka_bootstrap, topics.inbound, n)
    with running_worker(
        kafka_bootstrap,
        topics,
        smoke_artifact,
        tmp_path,
        topics__shadow=shadow,
        shadow__candidate=str(candidate),
    ) as w:
        records = read_topic(kafka_bootstrap, shadow)
        compared = w.metric('support_shadow_compared_total{head="intent"}')
        agreed = w.metric('support_shadow_agreed_total{head="intent"}')
        groups = [e for e in w.log_lines() if e.get("event") == "starting"]
    assert groups[0]["settings"]["group_id"].endswith("-shadow")
    wrapped = [ShadowResult.model_validate_json(m.value()) for m in records]
    assert Counter(r.result.message_id for r in wrapped) == Counter(good)
    assert {r.result.model.version for r in wrapped} == {"candidate"}
    serving = json.loads((smoke_artifact / "manifest.json").read_text())["version"]
    assert {r.serving.model.version for r in wrapped} == {serving}
    blank = sum(r.result.routing.reason == "empty_text" for r in wrapped)
    assert compared == len(wrapped) - blank > 0
    # The same weights under another name: the two models agree on every message.
    assert agreed == compared and all(all(r.agree.values()) for r in wrapped)
    nothing = read_committed(kafka_bootstrap, topics, 0, timeout=5)
    assert nothing.results == [] and nothing.dead == []
