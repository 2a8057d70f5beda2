"""The worker loop: consume -> decode -> batch -> one forward pass -> route -> commit.

Exactly-once commit protocol, once per batch (``Pipeline.commit``). It is the only
place where offsets move, and they move only with the outputs:

  1. ``begin_transaction()``
  2. produce every result and every dead letter of the batch
  3. ``send_offsets_to_transaction()``: next offset = last + 1 per partition, with
     the consumer's group metadata, so a fenced or rebalanced member cannot commit
  4. ``commit_transaction()``

On an abortable error: abort, seek every assigned partition back to its committed
offset, drop what is held, and consume it again. On a fatal error (fenced producer,
refused credentials): raise ``FatalKafkaError``, and the process exits non-zero.
In ``at_least_once`` mode, steps 1 and 4 become "flush until every record is
delivered" and a synchronous offset commit: a crash in between repeats a batch.

Overlap (``batching.overlap``): batch N runs in the model thread while this thread
commits batch N-1 and consumes, decodes and tokenizes batch N+1 (tokenizers and torch
release the GIL). At most two batches are in flight, and they commit strictly in the
order they were taken, so offsets only move forward. An abort drops both: the rewind
reads them again.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from worker import codec
from worker.admin import Health
from worker.batching import Batcher, BatchLimits
from worker.errors import FatalKafkaError
from worker.inference import Classifier
from worker.kafka_io import to_record
from worker.metrics import Metrics
from worker.routing import RoutingPolicy
from worker.settings import WorkerSettings

log = structlog.get_logger("worker")
R = TypeVar("R")

CONSUME_CHUNK = 500
# Delivery errors that are about the record itself: retrying cannot help.
RECORD_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                           KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG,
                           KafkaError.INVALID_MSG_SIZE, KafkaError.POLICY_VIOLATION})  # fmt: skip
IDLE_POLL_S = 0.1
FLIGHT_POLL_S = 0.005


@dataclass(frozen=True)
class Item:
    """One consumed record on its way through a batch."""

    record: codec.Record
    outcome: codec.Accepted | codec.Rejected
    ids: list[int]  # token ids; empty when the model is not needed
    truncated: bool = False


@dataclass
class Flight:
    """A batch taken from the batcher: in the model, then waiting for its commit."""

    items: list[Item]
    future: Future[tuple[dict[int, Any], dict[int, Exception], float]]
    started_wall_ms: float
    result: tuple[dict[int, Any], dict[int, Exception], float] | None = None


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: codec.Headers
    route: str  # a route name (":low" or ":unfamiliar" when the fallback took it), or "dlq:<stage>"


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
        self.eos = settings.mode == "exactly_once"
        self.carry: list[Any] = []  # records poll() returned while a batch was in the model
        self.flights: deque[Flight] = deque()  # oldest first; only the newest may be running
        self._waiting = False  # inside wait_keeping_membership (rebalance callbacks check it)
        self._commit_s = 0.0  # moving average of one commit's duration
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        # Wait this long for a forward pass before keeping the group alive by polling.
        self._poll_slice_s = settings.max_poll_interval_ms / 1000 / 4

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Transactions, then subscribe; the model was warmed up before this."""
        if self.eos:
            self._kafka_call(lambda: self.producer.init_transactions(self.s.commit_timeout_s))
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
        return not len(self.batcher) or self.batcher.time_left() > 2 * self._commit_s + 0.01

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
        rows, failures, inference_ms = flight.result
        items = flight.items
        ctx = codec.ResultContext(
            model=self.classifier.model_info,
            policy=self.policy.name,
            classified_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            inference_ms=inference_ms,
            batch_size=len(items),
            batch_started_ms=flight.started_wall_ms,
        )
        outgoing = [self.route(item, rows.get(id(item)), failures.get(id(item)), ctx)
                    for item in items]  # fmt: skip
        if not self.commit(outgoing, items):
            self.flights.clear()  # read again after the rewind, like the batcher's items
            return False
        self.observe(items, outgoing, rows, inference_ms, flight.started_wall_ms)
        return True

    def infer(self, items: list[Item]) -> tuple[dict[int, Any], dict[int, Exception], float]:
        """On the model thread: a failing batch is retried once, then split to isolate."""
        rows: dict[int, Any] = {}
        failures: dict[int, Exception] = {}
        total_ms = 0.0

        def run(group: list[Item], retry: bool) -> None:
            nonlocal total_ms
            try:
                out = self.classifier.predict([i.ids for i in group])
                self.metrics.model_calls.inc()
            except Exception as exc:  # noqa: BLE001 - any model failure is isolated, not fatal
                self.metrics.model_calls.inc()
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
            for item, row in zip(group, out.rows(), strict=True):
                rows[id(item)] = row

        if items:
            run(items, retry=True)
        return rows, failures, total_ms

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

    # -- the commit protocol -----------------------------------------------------

    def commit(self, outgoing: list[Outgoing], items: list[Item]) -> bool:
        """Outputs and offsets together (see the module docstring); False when aborted.

        A record the broker refuses on its own merits (too large, invalid) would abort
        every retry of its batch. After such an abort the refused records become dead
        letters (stage ``produce``, original bytes kept) and the batch is committed once
        more without a rewind. The broker refuses a whole produce request, so records
        that shared the request with the culprit are dead-lettered too.
        """
        offsets = next_offsets(item.record for item in items)
        for attempt in (1, 2):
            failed: dict[int, KafkaError] = {}
            try:
                started = time.monotonic()
                self._commit_once(outgoing, offsets, failed)
                self._commit_s += 0.2 * (time.monotonic() - started - self._commit_s)
                return True
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal():
                    raise FatalKafkaError(f"producer: {err}") from None
                log.warning("transaction_aborted", error=str(err), batch=len(items))
                self.metrics.aborts.inc()
                if self.eos:
                    self._abort()
                self.producer.poll(0)  # serve the delivery reports that name the refused
                refused = {i for i, e in failed.items() if e.code() in RECORD_ERRORS}
                if not refused or attempt == 2:
                    break
                outgoing = [
                    _produce_dead_letter(items[i], failed[i], self.s) if i in refused else out
                    for i, out in enumerate(outgoing)
                ]
        self.rewind()
        return False

    def _commit_once(
        self,
        outgoing: list[Outgoing],
        offsets: list[TopicPartition],
        failed: dict[int, KafkaError],
    ) -> None:
        def report(i: int) -> Callable[[KafkaError | None, Any], None]:
            def on_delivery(err: KafkaError | None, _msg: Any) -> None:
                if err is not None:
                    failed[i] = err

            return on_delivery

        def produce_all() -> None:
            for i, out in enumerate(outgoing):
                self._produce(out, report(i))

        if not self.eos:
            produce_all()
            if self.producer.flush(self.s.commit_timeout_s) > 0 or failed:
                first = next(iter(failed.values()), KafkaError(KafkaError._TIMED_OUT))
                raise KafkaException(first)
            self.consumer.commit(offsets=offsets, asynchronous=False)
            return
        # Step 1
        self.producer.begin_transaction()
        # Step 2
        produce_all()
        # Step 3
        self.producer.send_offsets_to_transaction(
            offsets, self.consumer.consumer_group_metadata(), self.s.commit_timeout_s
        )
        # Step 4
        self.producer.commit_transaction(self.s.commit_timeout_s)

    def _produce(self, out: Outgoing, on_delivery: Callable[..., None] | None = None) -> None:
        while True:
            try:
                self.producer.produce(
                    out.topic, value=out.value, key=out.key, headers=list(out.headers),
                    on_delivery=on_delivery,
                )  # fmt: skip
                self.producer.poll(0)
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction(self.s.commit_timeout_s)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal():
                raise FatalKafkaError(f"producer: {err}") from None
            raise

    def rewind(self) -> None:
        """Seek every assigned partition to its committed offset; drop what is held."""
        self.batcher.take()
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for tp in self.consumer.committed(assigned, timeout=self.s.commit_timeout_s):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # -- rebalance callbacks (called from inside consume()) -----------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=_names(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit the batches in hand before their partitions go to another member."""
        in_flight = sum(len(f.items) for f in self.flights)
        log.info("partitions_revoked", partitions=_names(partitions), held=len(self.batcher),
                 in_flight=in_flight)  # fmt: skip
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if self._waiting:
            # Called from the poll inside a wait: a commit here would overtake the batch
            # being waited for. Forget held records of the revoked partitions instead (the
            # new owner reads them from the committed offset); a batch in flight that
            # holds some fails its commit on the stale generation and is read again.
            held = self.batcher.take()
            for item in held:
                if (item.record.topic, item.record.partition) not in gone:
                    self.batcher.add(item, len(item.ids))
            return
        if not self.drain():
            return
        if any((i.record.topic, i.record.partition) in gone for i in self.batcher.items):
            self.process(self.batcher.take())

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost, not revoked: our generation is gone and a commit would fail. Drop them."""
        log.warning("partitions_lost", partitions=_names(partitions), held=len(self.batcher),
                    in_flight=sum(len(f.items) for f in self.flights))  # fmt: skip
        gone = {(tp.topic, tp.partition) for tp in partitions}
        held = [i for f in self.flights for i in f.items] + self.batcher.take()
        self.flights.clear()
        kept = [i for i in held if (i.record.topic, i.record.partition) not in gone]
        # What we still own is read again from its first held offset.
        for topic, partition, offset in first_offsets(i.record for i in kept):
            self.consumer.seek(TopicPartition(topic, partition, offset))

    # -- bookkeeping ---------------------------------------------------------------

    def observe(
        self, items: list[Item], outgoing: list[Outgoing], rows: dict[int, Any],
        inference_ms: float, started_wall_ms: float,
    ) -> None:  # fmt: skip
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
            if out.route.startswith("dlq:"):
                stage = out.route[4:]
                m.dead_letters.labels(stage).inc()
                r = item.record
                reason = dict(out.headers).get("x-error-message", b"").decode()
                extra = (
                    {"value": (r.value or b"")[:200].decode(errors="replace")}
                    if self.s.log_text
                    else {}
                )
                log.warning("dead_letter", stage=stage, topic=r.topic, partition=r.partition,
                            offset=r.offset, reason=reason, **extra)  # fmt: skip
                continue
            route, _, fallback = out.route.partition(":")
            m.messages_out.labels(route).inc()
            if debug:
                outcome = item.outcome
                assert isinstance(outcome, codec.Accepted)
                text = {"text": outcome.text[:200]} if self.s.log_text else {}
                log.debug("routed", message_id=outcome.message_id, topic=item.record.topic,
                          partition=item.record.partition, offset=item.record.offset,
                          route=route, **text)  # fmt: skip
            if fallback == "low":
                m.low_confidence.inc()
            elif fallback == "unfamiliar":
                m.unfamiliar.inc()
            row = rows.get(id(item))
            if row is not None:
                for head, label in row.labels.items():
                    m.predictions.labels(head, label).inc()
        log.info("batch_committed", size=len(items), inference_ms=round(inference_ms, 2),
                 model_items=len(rows))  # fmt: skip

    def _kafka_call(self, call: Callable[[], None]) -> None:
        try:
            call()
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            raise FatalKafkaError(f"{err}") from None


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
    if isinstance(outcome, codec.Rejected) or failure is not None:
        rejected = (
            outcome
            if isinstance(outcome, codec.Rejected)
            else codec.Rejected(r, "infer", type(failure).__name__, str(failure))
        )
        headers = codec.dead_letter_headers(rejected)
        return Outgoing(settings.topics.dlq, r.key, r.value, headers, f"dlq:{rejected.stage}")
    if row is None:  # empty or whitespace-only text: no model call
        decision = policy.empty_text()
        predictions, unfamiliarity = None, None
    else:
        predictions, unfamiliarity = row.predictions, row.unfamiliarity
        decision = policy.decide(row.labels, row.confidences, unfamiliarity)
    value = codec.result_value(
        outcome, decision.route, decision.action, decision.reason, item.truncated,
        predictions, ctx, unfamiliarity,
    )  # fmt: skip
    headers = codec.result_headers(r, classifier.model_info["version"])
    tag = decision.route + FALLBACK_TAGS.get(decision.reason, "")
    return Outgoing(settings.topics.for_route(decision.route), r.key, value, headers, tag)


def _produce_dead_letter(item: Item, err: KafkaError, settings: WorkerSettings) -> Outgoing:
    r = item.record
    rejected = codec.Rejected(
        r, "produce", err.name(), f"the broker refused the result: {err.str()}"
    )
    return Outgoing(settings.topics.dlq, r.key, r.value, codec.dead_letter_headers(rejected),
                    "dlq:produce")  # fmt: skip


def next_offsets(records: Any) -> list[TopicPartition]:
    """Per partition, the offset to commit: the last one processed + 1."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        last[key] = max(last.get(key, -1), r.offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def first_offsets(records: Any) -> list[tuple[str, int, int]]:
    first: dict[tuple[str, int], int] = defaultdict(lambda: 1 << 62)
    for r in records:
        key = (r.topic, r.partition)
        first[key] = min(first[key], r.offset)
    return [(t, p, o) for (t, p), o in sorted(first.items())]


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
