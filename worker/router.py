"""Route messages from Python the way the worker does, without Kafka.

``Router.load(model_path)`` loads the artifact as the worker would (``worker.serving``:
the same variant choice, routing policy and thresholds); ``route(texts)`` returns, per
text, the outbound message the worker would publish, through the same intake, forward
pass and ``worker.outgoing.route_batch``, in the worker's batches
(``batching.max_batch_size`` and ``max_batch_tokens``). ``support-worker classify``,
``support-worker score`` and ``support-trainer predict`` use it. Importing it loads
neither the worker's loop nor Kafka, nor torch (only a torch variant does).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from schemas.messages import OutboundMessage
from worker import codec
from worker.batching import BatchLimits, fill
from worker.errors import ModelBrokenError
from worker.inference import PROBE_TEXT, infer
from worker.intake import Item, intake
from worker.model.protocol import Model
from worker.outgoing import Outgoing, route_batch
from worker.routing import RoutingPolicy
from worker.serving import artifact_thresholds, build_policy, load_served
from worker.settings import WorkerSettings, load_settings


@dataclass(frozen=True)
class Routed:
    """One message's outcome: where the worker would publish it, and what."""

    topic: str
    value: dict[str, Any]  # the outbound message; for a dead letter: key, value, headers
    result: OutboundMessage | None  # None for a dead letter
    dead_letter: bool


@dataclass
class Router:
    model: Model
    policy: RoutingPolicy
    settings: WorkerSettings
    variant: str = "unknown"  # how the model runs: model.variant, or autotune's choice

    @classmethod
    def load(
        cls, model_path: str | Path | None = None, settings: WorkerSettings | None = None
    ) -> Router:
        """The model at ``model_path`` (default: the settings' ``model.path``)."""
        s = settings or load_settings()
        if model_path is not None:
            s = s.model_copy(
                update={"model": s.model.model_copy(update={"path": Path(model_path)})}
            )
        served = load_served(s)
        policy = build_policy(s, artifact_thresholds(s))
        return cls(served.model, policy, s, served.variant)

    def route(self, texts: Sequence[str]) -> list[Routed]:
        """Each text as an inbound message with ``message_id`` ``text-<i>``."""
        now_ms = int(time.time() * 1000)
        records = [
            codec.Record(
                "python",
                0,
                i,
                None,
                orjson.dumps({"message_id": f"text-{i}", "text": t}),
                [],
                now_ms,
            )
            for i, t in enumerate(texts)
        ]
        return [_routed(o) for o in self.route_records(records)]

    def route_records(self, records: Sequence[codec.Record]) -> list[Outgoing]:
        """Inbound records (any bytes) to the records the worker would produce, in order."""
        items = intake(records, self.model, self.settings.max_text_chars)
        return [out for batch in self.batches(items) for out in self.route_items(batch)]

    def batches(self, items: Iterable[Item]) -> Iterator[list[Item]]:
        """Items in the worker's batches: closed by ``batching.max_batch_size`` or
        ``max_batch_tokens``, in order."""
        b = self.settings.batching
        limits = BatchLimits(b.max_batch_size, b.max_batch_tokens, b.max_wait_ms / 1000)
        return fill(items, limits, _tokens)

    def route_items(self, items: Sequence[Item]) -> list[Outgoing]:
        """One batch through one forward pass (``worker.intake`` items)."""
        started_ms = time.time() * 1000
        result = infer(self.model, items, self._probe)
        if result.model_broken:
            raise ModelBrokenError("the model failed these messages and the probe message too")
        return route_batch(
            items, result, self.model.model_info, self.policy, self.settings.topics, started_ms
        )

    @functools.cached_property
    def _probe(self) -> list[int]:
        return list(self.model.tokenize([PROBE_TEXT]).ids[0])


def _tokens(item: Item) -> int:
    return len(item.ids)


def _routed(out: Outgoing) -> Routed:
    if out.is_dead_letter:
        value = {"key": out.key, "value": out.value, "headers": dict(out.headers)}
        return Routed(out.topic, value, None, True)
    body = orjson.loads(out.value or b"null")
    return Routed(out.topic, body, OutboundMessage.model_validate(body), False)
