"""Models and Kafka clients for unit tests: each implements just what the code under test
calls, the models through the ``Model`` protocol (no casts)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from worker.model.classifier import Classifier
from worker.model.protocol import BatchOutput
from worker.model.text import Tokenized

POISON = 666
ACTIONS = ("auto_resolve", "request_more_info", "escalate_to_human")
MODEL_INFO = {"name": "fake", "version": "1", "content_hash": "0" * 64}


class FlakyModel:
    """Fails any batch holding the poison token; logs the size of every forward pass."""

    def __init__(self) -> None:
        self.heads: Mapping[str, tuple[str, ...]] = {"action": ACTIONS}
        self.model_info: Mapping[str, str] = MODEL_INFO
        self.max_length = 16
        self.batches: list[int] = []

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        return Tokenized(
            [[1, *([POISON] if "poison" in t else [3]), 2] for t in texts], [False] * len(texts)
        )

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        self.batches.append(len(batch_ids))
        if any(POISON in ids for ids in batch_ids):
            raise RuntimeError("CUDA error: device-side assert (simulated)")
        probs = np.tile([0.9, 0.05, 0.05], (len(batch_ids), 1))
        return BatchOutput(self.heads, {"action": probs}, {"action": probs.argmax(1)}, 1.0)

    def warmup(self, batch_size: int = 8) -> None:
        pass


class RowDroppingModel(FlakyModel):
    """Answers every batch with one row too few: a model bug, not a bad message."""

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        return super().predict(batch_ids[:-1])


class GatedModel(FlakyModel):
    """Each forward pass waits until ``release`` is set: a slow model, without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        if not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the model")
        return super().predict(batch_ids)


class LoggedModel:
    """A real classifier whose forward passes are logged as events."""

    def __init__(self, inner: Classifier, events: list[tuple[str, int]]) -> None:
        self.inner, self.events = inner, events
        self.heads: Mapping[str, tuple[str, ...]] = inner.heads
        self.model_info: Mapping[str, str] = inner.model_info
        self.max_length = inner.max_length
        self.calls = 0

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        return self.inner.tokenize(texts)

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        self.calls += 1
        self.events.append(("infer", self.calls))
        return self.inner.predict(batch_ids)

    def warmup(self, batch_size: int = 8) -> None:
        pass


class BrokenModel(LoggedModel):
    """Every forward pass fails (think CUDA OOM); tokenizing still works."""

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        raise RuntimeError("CUDA out of memory (simulated)")


class PoisonedBatchModel(LoggedModel):
    """Fails every batch holding a message with the word 'poison'; the probe passes."""

    def __init__(self, inner: Classifier, events: list[tuple[str, int]]) -> None:
        super().__init__(inner, events)
        self.poison = set(inner.tokenize(["poison"]).ids[0][1:-1])

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        if any(self.poison & set(ids) for ids in batch_ids):
            raise RuntimeError("bad input (simulated)")
        return self.inner.predict(batch_ids)


class TxnProducer:
    """The transactional producer calls the commit protocol makes, logged; can fail commits.

    ``in_flight`` is asked at each commit whether another batch is in the model then.
    """

    def __init__(
        self, events: list[tuple[str, int]], fail_commit: int | None = None, abortable: bool = True
    ) -> None:
        self.events, self.fail_commit, self.abortable = events, fail_commit, abortable
        self.produced: list[bytes | None] = []
        self.topics: list[str] = []
        self.headers: list[list[tuple[str, bytes | None]]] = []
        self.commits = 0
        self.in_flight: Any = None
        self.in_flight_at_commit: list[bool] = []
        self.last_offsets: list[tuple[int, int]] = []

    def begin_transaction(self) -> None:
        pass

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        **_: Any,
    ) -> None:
        self.produced.append(value)
        self.topics.append(topic)
        self.headers.append(headers or [])

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[Any], *_: Any) -> None:
        self.last_offsets = [(tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, _timeout: float) -> None:
        self.commits += 1
        if self.in_flight is not None:
            self.in_flight_at_commit.append(self.in_flight())
        if self.commits == self.fail_commit:
            if self.abortable:
                raise KafkaException(
                    KafkaError(KafkaError._TIMED_OUT, "simulated", txn_requires_abort=True)
                )
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "simulated", retriable=True))
        self.events.append(("commit", self.last_offsets[0][1]))

    def abort_transaction(self, _timeout: float) -> None:
        self.events.append(("abort", self.commits))


class GroupConsumer:
    """Owns partitions ``owned`` of topic "memory"; committed offsets are all 0."""

    def __init__(self, owned: Sequence[int] = (0,)) -> None:
        self.owned = list(owned)
        self.seeks: list[tuple[int, int]] = []
        self.assigned: list[tuple[int, int]] = []  # (partition, offset) handed to librdkafka
        self.high_watermark = 100

    def incremental_assign(self, parts: list[Any]) -> None:
        self.assigned += [(tp.partition, tp.offset) for tp in parts]

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[Any]:
        return [TopicPartition("memory", p) for p in self.owned]

    def committed(self, parts: list[Any], timeout: float) -> list[Any]:
        return [TopicPartition(tp.topic, tp.partition, 0) for tp in parts]

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def position(self, parts: list[Any]) -> list[Any]:
        """Where the last seek left each partition (-1001, librdkafka's unknown, before)."""
        at = dict(self.seeks)
        return [TopicPartition(tp.topic, tp.partition, at.get(tp.partition, -1001)) for tp in parts]

    def get_watermark_offsets(self, tp: Any, timeout: float = 0, cached: bool = False) -> Any:
        return (0, self.high_watermark)


class PausingConsumer(GroupConsumer):
    """Logs pause/poll/resume; its first poll returns a record and releases the model."""

    def __init__(self, model: GatedModel) -> None:
        super().__init__(owned=(0, 1))
        self.model = model
        self.calls: list[str] = []

    def pause(self, parts: list[Any]) -> None:
        self.calls.append(f"pause:{len(parts)}")

    def resume(self, parts: list[Any]) -> None:
        self.calls.append(f"resume:{len(parts)}")

    def poll(self, timeout: float) -> Any:
        self.calls.append("poll")
        if self.calls.count("poll") == 1:
            self.model.release.set()
            return "a record fetched before the pause took effect"
        return None


def message(
    partition: int,
    offset: int,
    text: str = "refund please",
    headers: list[tuple[bytes, bytes | None]] | None = None,
) -> Message:
    """A consumed record of topic "memory", as librdkafka hands it over."""
    value = orjson.dumps({"message_id": f"p{partition}-{offset}", "text": text})
    now = int(time.time() * 1000)
    msg = Message(
        topic="memory",
        partition=partition,
        offset=offset,
        key=b"k",
        value=value,
        timestamp=(1, now),
    )
    if headers is None:
        return msg
    from tests.unit.worker.kafka.test_headers import with_headers

    return with_headers(msg, headers)
