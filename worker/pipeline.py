"""The worker loop: consume -> decode -> batch -> one forward pass -> route -> commit.

Offsets move only in ``worker.commit`` (the commit protocol, with its numbered steps
and its error table), and only together with the outputs. An aborted batch is read
again: every partition is rewound to its committed offset and what is held is dropped.

Overlap (``batching.overlap``): batch N runs in the model thread while this thread
commits batch N-1 and consumes, decodes and tokenizes batch N+1 (tokenizers and torch
release the GIL). At most two batches are in flight, and they commit strictly in the
order they were taken, so offsets only move forward. An abort drops both: the rewind
reads them again.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from schemas.messages import HEADER_MESSAGE, HEADER_TYPE
from worker import codec
from worker.admin import Health
from worker.batching import Batcher, BatchLimits
from worker.commit import Committer
from worker.errors import FatalKafkaError, ModelBrokenError
from worker.inference import Classifier
from worker.kafka_io import to_record
from worker.metrics import Metrics
from worker.outgoing import Outgoing, dead_letter
from worker.routing import RoutingPolicy
from worker.settings import WorkerSettings

log = structlog.get_logger("worker")
R = TypeVar("R")

CONSUME_CHUNK = 500
# A short text the model must always be able to classify: when a whole batch fails,
# this tells a broken model (the probe fails too) from a batch of bad messages.
PROBE_TEXT = "where is my refund"
IDLE_POLL_S = 0.1
FLIGHT_POLL_S = 0.005


@dataclass(frozen=True)
class Item:
    """One consumed record on its way through a batch."""

    record: codec.Record
    outcome: codec.Accepted | codec.Rejected
    ids: list[int]  # token ids; empty when the model is not needed
    truncated: bool = False


class Inference(NamedTuple):
    """One batch's forward passes: rows and failures by id(item)."""

    rows: dict[int, Any]
    failures: dict[int, Exception]
    inference_ms: float
    model_broken: bool  # every item failed, and so did the probe: the worker, not the input


@dataclass
class Flight:
    """A batch taken from the batcher: in the model, then waiting for its commit."""

    items: list[Item]
    future: Future[Inference]
    started_wall_ms: float
    result: Inference | None = None


class Pipeline:
    def __init__(
        self,
        settings: WorkerSettings,
        classifier: Classifier,
        policy: RoutingPolicy,
        consumer: Consumer,
        producer: Producer,
        metrics: Metrics,
        health: Health,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s = settings
        self.classifier = classifier
        self.policy = policy
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        self.health = health
        b = settings.batching
        self.batcher: Batcher[Item] = Batcher(
            BatchLimits(b.max_batch_size, b.max_batch_tokens, b.max_wait_ms / 1000), clock
        )
        self.stopping = False
        self.carry: list[Any] = []  # records poll() returned while a batch was in the model
        self.flights: deque[Flight] = deque()  # oldest first; only the newest may be running
        self._waiting = False  # inside wait_keeping_membership (rebalance callbacks check it)
        self.committer = Committer(settings, producer, consumer, metrics, health)
        self.broken_batches = 0  # in a row; the circuit breaker opens at model.failing_batches
        self._probe: list[int] | None = None
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        # Wait this long for a forward pass before keeping the group alive by polling.
        self._poll_slice_s = settings.max_poll_interval_ms / 1000 / 4

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Transactions, then subscribe; the model was warmed up before this."""
        self.committer.init()
        self.health.transactions_ready = True
        self.consumer.subscribe(
            [self.s.topics.inbound],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.health.subscribed = True

    def run(self) -> None:
        """Until ``stopping``: consume, batch, process; then finish the batch in hand."""
        while not self.stopping:
            self.health.beat()
            if len(self.batcher):
                # Fill until the batch's own deadline; an early return only costs a turn.
                want, wait = min(self.batcher.room(), CONSUME_CHUNK), self.batcher.time_left()
            else:
                # Nothing waiting: return at the first arrival, which opens the batch clock.
                want, wait = 1, IDLE_POLL_S
            if self.flights and not self.flights[-1].future.done():
                wait = min(wait, FLIGHT_POLL_S)  # look again soon: its commit is due when done
            msgs = self.consumer.consume(num_messages=want, timeout=min(wait, IDLE_POLL_S))
            if self.carry:
                msgs, self.carry = [*self.carry, *msgs], []
            if msgs:
                self.accept(msgs)
            if self.batcher.ready():
                self.dispatch()
            elif self._commit_now():
                self.drain()
        if self.drain() and len(self.batcher):
            self.process(self.batcher.take())

    def close(self) -> None:
        """Leave the group (partitions move now, not after session.timeout) and flush."""
        self._model_thread.shutdown(wait=True)
        self.consumer.close()
        self.producer.flush(self.s.commit_timeout_s)

    def leave(self) -> None:
        """After a fatal error: leave the group now, committing nothing more.

        Everything held is dropped first, so the revoke callback that close() runs finds
        nothing to commit; the next owner reads it from the committed offsets.
        """
        self.flights.clear()
        self.batcher.take()
        self.carry = []
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("consumer_close_failed", error=str(exc.args[0]))

    # -- intake ----------------------------------------------------------------

    def accept(self, msgs: Sequence[Any]) -> None:
        """Decode a consumed chunk, tokenize its texts in one call, and batch it."""
        records = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise FatalKafkaError(f"consumer: {err}")
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer_error", error=str(err))
                continue
            records.append(to_record(msg))
        self.metrics.messages_in.inc(len(records))
        outcomes = [codec.decode(r, self.s.max_text_chars) for r in records]
        # Only non-empty accepted texts go to the model; all of them in one tokenizer call.
        needs_model = [isinstance(o, codec.Accepted) and bool(o.text.strip()) for o in outcomes]
        texts = [o.text for o, m in zip(outcomes, needs_model, strict=True) if m]  # type: ignore[union-attr]
        ids, truncated = self.classifier.token_ids(texts) if texts else ([], [])
        it = iter(zip(ids, truncated, strict=True))
        items = []
        for record, outcome, model in zip(records, outcomes, needs_model, strict=True):
            if model:
                tok, cut = next(it)
                items.append(Item(record, outcome, tok, cut))
            else:
                items.append(Item(record, outcome, []))
        for n, item in enumerate(items):
            if not self.batcher.fits(len(item.ids)) and not self.dispatch():
                return  # aborted and rewound: the rest of the chunk is read again
            self.batcher.add(item, len(item.ids))
            more = n + 1 < len(items)
            if more and self.batcher.ready() and not self.dispatch():
                return

    # -- one batch ---------------------------------------------------------------

    def _commit_now(self) -> bool:
        """Commit a finished batch before the next one is ready, when that costs nothing.

        Between dispatches a finished batch would otherwise wait for the next batch to
        close. Committing it now is free unless the open batch's deadline would pass
        during the commit, which would close that batch early (smaller batches, more
        transactions); then the commit waits and overlaps the next forward pass instead.
        """
        if not self.flights or not self.flights[-1].future.done():
            return False
        commit_s = self.committer.commit_s
        return not len(self.batcher) or self.batcher.time_left() > 2 * commit_s + 0.01

    def dispatch(self) -> bool:
        """Take the ready batch into the model; commit every batch before it that is done.

        False when a commit aborted: everything in flight was dropped and rewound.
        """
        if self.flights:
            self._await(self.flights[-1])  # the model thread is free once this returns
        items = self.batcher.take()
        if items:
            self.flights.append(self._start(items))
        keep = 1 if self.s.batching.overlap else 0
        while len(self.flights) > keep:
            if not self._complete(self.flights.popleft()):
                return False
        return True

    def drain(self) -> bool:
        """Commit everything in flight, oldest first; False when a commit aborted."""
        while self.flights:
            if not self._complete(self.flights.popleft()):
                return False
        return True

    def process(self, items: list[Item]) -> bool:
        """Classify, route and commit one batch now, after whatever is in flight."""
        if not self.drain():
            return False  # the rewind reads these items again too
        return self._complete(self._start(items))

    def _start(self, items: list[Item]) -> Flight:
        started_wall_ms = time.time() * 1000
        model_items = [i for i in items if i.ids]
        return Flight(items, self._model_thread.submit(self.infer, model_items), started_wall_ms)

    def _await(self, flight: Flight) -> None:
        if flight.result is None:
            flight.result = self.wait_keeping_membership(flight.future)

    def _complete(self, flight: Flight) -> bool:
        """Route and commit one batch whose forward pass is done (waiting for it if not)."""
        self._await(flight)
        assert flight.result is not None
        rows, failures, inference_ms, broken = flight.result
        items = flight.items
        if broken:
            self._model_failed(failures)
            return False
        self.broken_batches = 0
        ctx = codec.ResultContext(
            model=self.classifier.model_info,
            policy=self.policy.name,
            classified_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            inference_ms=inference_ms,
            batch_size=len(items),
            batch_started_ms=flight.started_wall_ms,
        )
        outgoing = [
            self.route(item, rows.get(id(item)), failures.get(id(item)), ctx) for item in items
        ]
        batch = [(item.record, out) for item, out in zip(items, outgoing, strict=True)]
        committed = self.committer.commit(batch)
        if committed is None:
            self.flights.clear()  # read again after the rewind, like the batcher's items
            self.rewind()
            return False
        kept = [items[i] for i in committed.kept]
        self.observe(kept, committed.outgoing, rows, inference_ms, flight.started_wall_ms)
        return True

    def _model_failed(self, failures: dict[int, Exception]) -> None:
        """A whole batch failed and so did the probe: the model, not the messages.

        Nothing is dead-lettered (dead letters are for bad messages). The batch is read
        again; after ``model.failing_batches`` such batches in a row the circuit opens:
        ModelBrokenError, and the process leaves the group so a healthy replica takes
        the partitions.
        """
        self.broken_batches += 1
        error = repr(next(iter(failures.values()), None))
        log.error(
            "model_failing",
            batches_in_row=self.broken_batches,
            limit=self.s.model.failing_batches,
            error=error,
        )
        self.flights.clear()
        self.rewind()
        if self.broken_batches >= self.s.model.failing_batches:
            self.health.model_ready = False
            raise ModelBrokenError(
                f"{self.broken_batches} batches in a row failed whole, and so did a probe "
                f"message; last error: {error}"
            )

    def infer(self, items: list[Item]) -> Inference:
        """On the model thread: a failing batch is retried once, then split to isolate."""
        rows: dict[int, Any] = {}
        failures: dict[int, Exception] = {}
        total_ms = 0.0

        def run(group: list[Item], retry: bool) -> None:
            nonlocal total_ms
            self.metrics.model_calls.inc()
            try:
                out = self.classifier.predict([i.ids for i in group])
                rows_out = out.rows()
                if len(rows_out) != len(group):
                    # A model fault like any other: retried, split, and if it persists
                    # the probe and the circuit breaker judge the model.
                    raise RuntimeError(f"the model returned {len(rows_out)} rows for {len(group)}")
            except Exception as exc:  # noqa: BLE001 - any model failure is isolated, not fatal
                log.warning("inference_failed", size=len(group), error=repr(exc), retry=retry)
                if retry:
                    run(group, retry=False)
                elif len(group) == 1:
                    failures[id(group[0])] = exc
                else:
                    half = len(group) // 2
                    run(group[:half], retry=False)
                    run(group[half:], retry=False)
                return
            total_ms += out.inference_ms
            for item, row in zip(group, rows_out, strict=True):
                rows[id(item)] = row

        if items:
            run(items, retry=True)
        broken = bool(items) and len(failures) == len(items) and not self._probe_passes()
        return Inference(rows, failures, total_ms, broken)

    def _probe_passes(self) -> bool:
        try:
            if self._probe is None:
                self._probe = self.classifier.token_ids([PROBE_TEXT])[0][0]
            if len(self.classifier.predict([self._probe]).rows()) != 1:
                raise RuntimeError("the model returned no row for the probe")
        except Exception as exc:  # noqa: BLE001 - the probe's failure is the verdict
            log.warning("probe_failed", error=repr(exc))
            return False
        return True

    def wait_keeping_membership(self, future: Future[R]) -> R:
        """A forward pass's result, polling with every partition paused while it runs long.

        A forward pass longer than max.poll.interval.ms would get this member thrown out
        of the group. Paused, poll() fetches nothing but keeps the membership (and serves
        rebalance callbacks); anything it does return is carried, never dropped.
        """
        try:
            return future.result(timeout=self._poll_slice_s)
        except FutureTimeout:
            pass
        paused = self.consumer.assignment()
        self.consumer.pause(paused)
        log.warning("slow_inference_polling_paused", partitions=len(paused))
        self._waiting = True
        try:
            while True:
                try:
                    return future.result(timeout=min(1.0, self._poll_slice_s))
                except FutureTimeout:
                    msg = self.consumer.poll(0)
                    if msg is not None:
                        self.carry.append(msg)
        finally:
            self._waiting = False
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            self.consumer.resume([tp for tp in paused if (tp.topic, tp.partition) in owned])

    def route(
        self, item: Item, row: Any, failure: Exception | None, ctx: codec.ResultContext
    ) -> Outgoing:
        return to_outgoing(item, row, failure, ctx, self.policy, self.s, self.classifier)

    def rewind(self) -> None:
        """Seek every assigned partition to its committed offset; drop what is held."""
        self.batcher.take()
        self.carry = []  # fetched before the seek: the rewind reads them again
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for attempt in (1, 2):
            try:
                committed = self.consumer.committed(assigned, timeout=self.s.commit_timeout_s)
            except KafkaException as exc:
                failed: str = str(exc.args[0])
            else:
                errors = [tp for tp in committed if tp.error is not None]
                if not errors:
                    break
                failed = f"{_names(errors)}: {errors[0].error}"
            log.warning("committed_lookup_failed", attempt=attempt, error=failed)
            if attempt == 2:
                # Never guess "from the beginning" (days of log) or "from here" (a loss).
                raise FatalKafkaError(f"cannot read the committed offsets to rewind: {failed}")
        for tp in committed:
            # No committed offset at all (OFFSET_INVALID) is a new group: the earliest
            # record, as auto.offset.reset says.
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # -- rebalance callbacks (called from inside consume()) -----------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=_names(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit the batches in hand before their partitions go to another member."""
        in_flight = sum(len(f.items) for f in self.flights)
        log.info(
            "partitions_revoked",
            partitions=_names(partitions),
            held=len(self.batcher),
            in_flight=in_flight,
        )
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.forget_partitions(partitions)
        if self._waiting:
            # Called from the poll inside a wait: a commit here would overtake the batch
            # being waited for. Forget the held records of the revoked partitions (the new
            # owner reads them from the committed offset). The batches in flight keep
            # theirs, but the commit sends nothing for a partition this member no longer
            # owns (worker.commit, step 1).
            self._forget(gone)
            return
        if not self.drain():
            return
        if any((i.record.topic, i.record.partition) in gone for i in self.batcher.items):
            self.process(self.batcher.take())
        self._forget(gone)  # carried records of the revoked partitions

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost, not revoked: our generation is gone and a commit would fail. Drop them."""
        log.warning(
            "partitions_lost",
            partitions=_names(partitions),
            held=len(self.batcher),
            in_flight=sum(len(f.items) for f in self.flights),
        )
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.forget_partitions(partitions)
        held = [i for f in self.flights for i in f.items] + self.batcher.take()
        self.flights.clear()
        positions = [(i.record.topic, i.record.partition, i.record.offset) for i in held]
        # Carried records too: the seek below reads them again, so keeping them would
        # process them twice.
        positions += [(m.topic(), m.partition(), m.offset()) for m in self.carry]
        self.carry = []
        kept = [(t, p, o) for t, p, o in positions if (t, p) not in gone]
        # What we still own is read again from its first held offset.
        for topic, partition, offset in first_offsets(kept):
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def _forget(self, gone: set[tuple[str, int]]) -> None:
        """Drop held and carried records of partitions that are no longer ours."""
        for item in self.batcher.take():
            if (item.record.topic, item.record.partition) not in gone:
                self.batcher.add(item, len(item.ids))
        self.carry = [m for m in self.carry if (m.topic(), m.partition()) not in gone]

    # -- bookkeeping ---------------------------------------------------------------

    def observe(
        self,
        items: list[Item],
        outgoing: list[Outgoing],
        rows: dict[int, Any],
        inference_ms: float,
        started_wall_ms: float,
    ) -> None:
        m = self.metrics
        now_ms = time.time() * 1000
        # Message text reaches the log only with log_text set: support chats hold personal data.
        debug = self.s.log_level == "debug"
        m.batches.inc()
        m.batch_size.observe(len(items))
        m.batch_tokens.observe(sum(len(i.ids) for i in items))
        if rows:
            m.inference_ms.observe(inference_ms)
        for item, out in zip(items, outgoing, strict=True):
            ts = item.record.timestamp_ms
            if ts is not None:
                m.queue_ms.observe(max(0.0, started_wall_ms - ts))
                m.end_to_end_ms.observe(max(0.0, now_ms - ts))
            if out.is_dead_letter:
                stage = out.route[4:]
                m.dead_letters.labels(stage).inc()
                r = item.record
                headers = dict(out.headers)
                # The reason can quote the message (a metadata key is customer-chosen, so
                # it may be personal data): like the text, it is logged only with log_text.
                # It always travels with the dead letter itself.
                extra = (
                    {
                        "reason": (headers.get(HEADER_MESSAGE) or b"").decode(errors="replace"),
                        "value": (r.value or b"")[:200].decode(errors="replace"),
                    }
                    if self.s.log_text
                    else {}
                )
                log.warning(
                    "dead_letter",
                    stage=stage,
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    error_type=(headers.get(HEADER_TYPE) or b"").decode(),
                    **extra,
                )
                continue
            route, _, fallback = out.route.partition(":")
            m.messages_out.labels(route).inc()
            if debug:
                outcome = item.outcome
                assert isinstance(outcome, codec.Accepted)
                text = {"text": outcome.text[:200]} if self.s.log_text else {}
                log.debug(
                    "routed",
                    message_id=outcome.message_id,
                    topic=item.record.topic,
                    partition=item.record.partition,
                    offset=item.record.offset,
                    route=route,
                    **text,
                )
            if fallback == "low":
                m.low_confidence.inc()
            elif fallback == "unfamiliar":
                m.unfamiliar.inc()
            row = rows.get(id(item))
            if row is not None:
                for head, label in row.labels.items():
                    m.predictions.labels(head, label).inc()
        log.info(
            "batch_committed",
            size=len(items),
            inference_ms=round(inference_ms, 2),
            model_items=len(rows),
        )


# Outgoing.route's suffix for a result the fallback took, counted by the metrics.
FALLBACK_TAGS = {"low_confidence": ":low", "unfamiliar": ":unfamiliar"}


def to_outgoing(
    item: Item,
    row: Any,
    failure: Exception | None,
    ctx: codec.ResultContext,
    policy: RoutingPolicy,
    settings: WorkerSettings,
    classifier: Classifier,
) -> Outgoing:
    """The record to produce for one item: a routed result or a dead letter."""
    r = item.record
    outcome = item.outcome
    if isinstance(outcome, codec.Rejected):
        return dead_letter(outcome, settings.topics.dlq)
    if failure is not None:
        rejected = codec.Rejected(r, "infer", type(failure).__name__, str(failure))
        return dead_letter(rejected, settings.topics.dlq)
    # Route and serialize are total: what they cannot do for one message (e.g. an unknown
    # field nested deeper than orjson writes, though not deeper than it reads) becomes
    # that message's dead letter instead of an exception that stops the partition.
    try:
        if row is None:  # empty or whitespace-only text: no model call
            decision = policy.empty_text()
            predictions, unfamiliarity = None, None
        else:
            predictions, unfamiliarity = row.predictions, row.unfamiliarity
            decision = policy.decide(row.labels, row.confidences, unfamiliarity)
    except Exception as exc:  # noqa: BLE001 - one message's failure, not the worker's
        rejected = codec.Rejected(r, "route", type(exc).__name__, str(exc))
        return dead_letter(rejected, settings.topics.dlq)
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
    except Exception as exc:  # noqa: BLE001
        rejected = codec.Rejected(r, "serialize", type(exc).__name__, str(exc))
        return dead_letter(rejected, settings.topics.dlq)
    headers = codec.result_headers(r, classifier.model_info["version"])
    tag = decision.route + FALLBACK_TAGS.get(decision.reason, "")
    return Outgoing(settings.topics.for_route(decision.route), r.key, value, headers, tag)


def first_offsets(positions: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Per partition, the lowest of the given (topic, partition, offset) positions."""
    first: dict[tuple[str, int], int] = defaultdict(lambda: 1 << 62)
    for topic, partition, offset in positions:
        first[(topic, partition)] = min(first[(topic, partition)], offset)
    return [(t, p, o) for (t, p), o in sorted(first.items())]


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
