"""The records a batch produces: routed results and dead letters. Pure: no Kafka.

``to_outgoing`` turns one item and its model result into the record to produce. It is
total: what cannot be routed or serialized for one message becomes that message's
dead letter, never an exception that stops the partition.

A dead letter carries the original key and value. When the broker refuses even that
(a record that fit the inbound topic compressed may not fit the DLQ), the dead letter
steps down a ladder instead of being retried forever: the full copy, then a truncated
copy whose headers say so, then a pointer (headers only: where the original lives).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from schemas.messages import DlqStage, Route, RouteReason
from worker import codec
from worker.inference import BatchResult, Failure, ItemResult, Skipped
from worker.intake import Item
from worker.routing import RoutingPolicy
from worker.settings import TopicNames

# A truncated dead letter keeps this much of the value: far below any sane
# max.message.bytes, and enough to see what the record was.
TRUNCATED_VALUE_BYTES = 64 * 1024
HEADER_TRUNCATED = "x-dead-letter-truncated"  # the original value's length, in bytes
HEADER_POINTER = "x-dead-letter-pointer"  # "1": the value is absent, see x-source-*
HEADER_VALUE_SHA256 = "x-original-value-sha256"


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: codec.Headers
    route: Route | None = None  # a result's route; None for a dead letter
    reason: RouteReason | None = None  # why the result took that route
    stage: DlqStage | None = None  # a dead letter's stage; None for a result
    rung: int = 0  # 0 a result or a full dead letter; 1 truncated; 2 pointer

    @property
    def is_dead_letter(self) -> bool:
        return self.stage is not None


def dead_letter(rejected: codec.Rejected, dlq_topic: str) -> Outgoing:
    """The original key and value, with the reason in headers, for the dead-letter topic.

    Records the client could not deliver have no key or value here: a pointer.
    """
    r = rejected.record
    headers = codec.dead_letter_headers(rejected)
    if isinstance(rejected, codec.Unreadable):
        pointer = [*headers, (HEADER_POINTER, b"1")]
        return Outgoing(dlq_topic, None, None, pointer, stage=rejected.stage, rung=2)
    return Outgoing(dlq_topic, r.key, r.value, headers, stage=rejected.stage)


def step_down(out: Outgoing) -> Outgoing | None:
    """A dead letter the broker refused, one rung smaller; None below the last rung."""
    if not out.is_dead_letter or out.rung >= 2:
        return None
    value = out.value or b""
    digest = (HEADER_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode())
    if out.rung == 0:
        headers = [*out.headers, (HEADER_TRUNCATED, str(len(value)).encode()), digest]
        return replace(out, value=value[:TRUNCATED_VALUE_BYTES], headers=headers, rung=1)
    # Pointer: only our own headers (source topic/partition/offset, reason); the
    # original headers could be what is too large.
    ours = [(k, v) for k, v in out.headers if k.startswith("x-")]
    return replace(out, key=None, value=None, headers=[*ours, (HEADER_POINTER, b"1")], rung=2)


def refused_result(
    out: Outgoing, record: codec.Record, error_name: str, reason: str, dlq_topic: str
) -> Outgoing | None:
    """What to produce instead of a record the broker refused on its own merits."""
    if out.is_dead_letter:
        return step_down(out)
    rejected = codec.Rejected(record, "produce", error_name, reason)
    return dead_letter(rejected, dlq_topic)


def route_batch(
    items: Sequence[Item],
    result: BatchResult,
    model: Mapping[str, str],
    policy: RoutingPolicy,
    topics: TopicNames,
    batch_started_ms: float,
) -> list[Outgoing]:
    """What to produce for one batch that went through the model: one record per item,
    in order. The worker's loop, ``support-worker classify`` and ``worker.router`` (the
    Python API, ``support-trainer predict``) all route here."""
    if len(result.results) != len(items):
        raise RuntimeError(f"{len(result.results)} results for a batch of {len(items)}")
    ctx = codec.ResultContext(
        model=model,
        policy=policy.name,
        classified_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        inference_ms=result.inference_ms,
        batch_size=len(items),
        batch_started_ms=batch_started_ms,
    )
    pairs = zip(items, result.results, strict=True)
    return [to_outgoing(item, r, ctx, policy, topics) for item, r in pairs]


def to_outgoing(
    item: Item,
    result: ItemResult,
    ctx: codec.ResultContext,
    policy: RoutingPolicy,
    topics: TopicNames,
) -> Outgoing:
    """The record to produce for one item: a routed result or a dead letter."""
    r, outcome = item.record, item.outcome
    if isinstance(outcome, codec.Rejected):
        return dead_letter(outcome, topics.dlq)
    if isinstance(result, Failure):
        error = result.error
        return dead_letter(codec.Rejected(r, "infer", type(error).__name__, str(error)), topics.dlq)
    if isinstance(result, Skipped) and item.ids:
        # Intake sent it to the model, and no prediction came back: a bug, never a route.
        raise RuntimeError(f"no model result for {r.topic}[{r.partition}]@{r.offset}")
    try:
        if isinstance(result, Skipped):  # blank text: no model call
            decision = policy.empty_text()
            predictions, unfamiliarity = None, None
        else:
            predictions, unfamiliarity = result.predictions, result.unfamiliarity
            decision = policy.decide(result.labels, result.confidences, unfamiliarity)
    except Exception as exc:  # noqa: BLE001 - one message's failure, not the worker's
        return dead_letter(codec.Rejected(r, "route", type(exc).__name__, str(exc)), topics.dlq)
    try:
        value = codec.result_value(
            outcome,
            decision.route,
            decision.action,
            decision.reason,
            item.truncated,
            predictions,
            ctx,
            unfamiliarity,
        )
    except Exception as exc:  # noqa: BLE001 - e.g. nesting orjson reads but cannot write
        rejected = codec.Rejected(r, "serialize", type(exc).__name__, str(exc))
        return dead_letter(rejected, topics.dlq)
    headers = codec.result_headers(r, ctx.model["version"])
    topic = topics.for_route(decision.route)
    return Outgoing(topic, r.key, value, headers, decision.route, decision.reason)
