"""A message unlike the model's training data goes to the fallback route as 'unfamiliar'."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from tests.integration.worker.harness import make_topics, read_committed, start_worker

# The smoke artifact trains on trainer/data/synthetic.py's templates: these are two of
# them filled in (familiar), and two texts from nowhere near that ground.
FAMILIAR = ["i want a refund for my jacket", "what are your opening hours on sunday"]
UNFAMILIAR = [
    "das Wetter in Berlin ist heute schön und sonnig, wir gehen spazieren",
    "\U0001f642\U0001f642\U0001f642 ### 12345 @@@ zzz qqq xxxx",
]


def test_unfamiliar_messages_go_to_the_fallback_route(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    threshold = json.loads((smoke_artifact / "manifest.json").read_text())["ood"]["threshold"]
    topics = make_topics(make_topic, partitions=1)
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    texts = {f"f{i}": t for i, t in enumerate(FAMILIAR)} | {
        f"u{i}": t for i, t in enumerate(UNFAMILIAR)
    }
    for mid, text in texts.items():
        p.produce(topics.inbound, json.dumps({"message_id": mid, "text": text}).encode())
    assert p.flush(30) == 0
    tag = uuid.uuid4().hex[:8]
    # A confidence floor of 0 leaves the OOD check as the only way to the fallback.
    w = start_worker(
        kafka_bootstrap,
        topics,
        smoke_artifact,
        tmp_path,
        group=f"g-{tag}",
        txn_id=f"t-{tag}",
        routing__min_action_confidence="0",
    )
    try:
        w.wait_ready()
        got = read_committed(kafka_bootstrap, topics, len(texts), timeout=60)
        routed = {value["message_id"]: (topic, value) for topic, value, _ in got.results}
        assert set(routed) == set(texts)
        for mid, (topic, value) in routed.items():
            score = value["routing"]["unfamiliarity"]
            if mid.startswith("u"):
                assert score > threshold, (mid, score)
                assert value["routing"]["reason"] == "unfamiliar", value["routing"]
                assert (topic, value["route"]) == (topics.more_info, "more_info")
            else:
                assert score <= threshold, (mid, score)
                assert value["routing"]["reason"] == "model", value["routing"]
        assert w.metric("support_unfamiliar_fallbacks_total") == len(UNFAMILIAR)
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(30) == 0
