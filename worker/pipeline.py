"""The worker loop: consume -> decode -> batch -> one forward pass -> route -> commit.

Offsets move only in ``worker.kafka.commit`` (the commit protocol, with its numbered steps
and its error table), and only together with the outputs. An aborted batch is read
again: every partition is rewound to its committed offset and what is held is dropped.

Overlap (``batching.overlap``): batch N runs in the model thread while this thread
commits batch N-1 and consumes, decodes and tokenizes batch N+1 (tokenizers and torch
release the GIL). At most two batches are in flight, and they commit strictly in the
order they were taken, so offsets only move forward. An abort drops both: the rewind
reads them again.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from worker import codec, shadow
from worker.batching import Batcher, BatchLimits
from worker.errors import FatalKafkaError, ModelBrokenError
from worker.health import Health
from worker.inference import PROBE_TEXT, BatchResult, Failure, Outputs, forward, resolve
from worker.intake import Item, intake
from worker.kafka.clients import to_record
from worker.kafka.commit import Committer
from worker.kafka.positions import assign_at_committed, first_offsets, names, seek_to_committed
from worker.metrics import Metrics
from worker.model.protocol import Model
from worker.model.tuner import LiveVariants
from worker.model_thread import model_executor
from worker.outgoing import Outgoing, route_batch
from worker.review import Pick, Sampler, review_value
from worker.routing import RoutingPolicy
from worker.runtime import log_limit
from worker.runtime.logs import log_committed
from worker.settings import WorkerSettings
from worker.stall import StallWatch
from worker.swap import PointerWatch, Swapped
from worker.tracing import OFF, BatchTrace, Tracer
from worker.unreadable import UNREADABLE_CODES, Span, Spans

log = structlog.get_logger("worker")
R = TypeVar("R")


def _forward_serving(reference: Reference, items: Sequence[Item]) -> Outputs:
    """Shadow: the serving model's pass over the candidate's batch, in its own tokens."""
    model = reference.model
    return forward(model, shadow.retokenized(items, model), reference.probe)


CONSUME_CHUNK = 500
IDLE_POLL_S = 0.1
FLIGHT_POLL_S = 0.005
# How often the loop looks at its partitions for stalls and at unanswered probes.
TICK_S = 5.0
# The high watermark a probe for an unreadable span may ask the broker for.
WATERMARK_TIMEOUT_S = 5.0


@dataclass
class Flight:
    """A batch taken from the batcher: in the model, then waiting for its commit."""

    items: list[Item]
    future: Future[Outputs]
    started_wall_ms: float
    result: BatchResult | None = None
    serving: Future[Outputs] | None = None  # shadow: the serving model's pass
    trace: BatchTrace = OFF  # its spans (worker.tracing); OFF: tracing is off


@dataclass(frozen=True)
class Reference:
    """Shadow: the serving model a candidate is compared with, and its policy."""

    model: Model
    policy: RoutingPolicy
    probe: list[int]  # PROBE_TEXT in the serving model's tokens, cut once


class Pipeline:
    def __init__(
        self,
        settings: WorkerSettings,
        classifier: Model,
        policy: RoutingPolicy,
        consumer: Consumer,
        producer: Producer,
        metrics: Metrics,
        health: Health,
        clock: Callable[[], float] = time.monotonic,
        model_thread: ThreadPoolExecutor | None = None,
        live: LiveVariants | None = None,
        sampler: Sampler | None = None,
        reference: Reference | None = None,
        reload: Callable[[], Swapped] | None = None,
        watch: PointerWatch | None = None,
        tracer: Tracer | None = None,
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
        self._probe = classifier.tokenize([PROBE_TEXT]).ids[0]
        # The thread that loaded and warmed the model, so that one OpenMP pool serves it
        # (worker.model_thread).
        self._model_thread = model_thread or model_executor()
        # MODEL__VARIANT=auto: the variant of each batch, trialled on this pipeline's own
        # cycles (worker.model.tuner); None serves ``classifier`` throughout.
        self.live = live
        # Wait this long for a forward pass before keeping the group alive by polling.
        self._poll_slice_s = settings.max_poll_interval_ms / 1000 / 4
        self.sampler = sampler  # the review queue (worker.review); None: off
        self.reference = reference  # shadow (worker.shadow); None: serving
        # Hot swap (worker.swap): ``reload`` loads what model.path points to now.
        self.reload = reload
        self.watch = watch
        self.clock = clock
        self.unreadable = Spans(self._seek, self._high_watermark, clock)
        self.stall = StallWatch(settings.stall_after_s, clock)
        self._next_tick = clock() + TICK_S
        self.tracer = tracer  # None: tracing off (worker.tracing)
        self._opened_at: float | None = None  # when the batch last taken had opened

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
            if self.clock() >= self._next_tick:
                self.tick()
            if self.watch is not None and self.watch.due():
                self.swap()
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
            self.process(self._take())

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
        self._drop_flights("dropped")
        self.batcher.take()
        self.carry = []
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("consumer_close_failed", error=str(exc.args[0]))

    # -- intake ----------------------------------------------------------------

    def accept(self, msgs: Sequence[Any]) -> None:
        """Decode a consumed chunk, tokenize its texts in one call, and batch it.

        A consumer error that recurs at one offset starts a search for the unreadable
        span (worker.unreadable); its partition's records answer the search until the
        span is known, which then takes its place in the batch as a pointer dead letter.
        """
        entries: list[codec.Record | Item] = []
        self.unreadable.new_chunk()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise FatalKafkaError(f"consumer: {err}")
                span = self._consumer_error(msg, err)
                if span is not None:
                    entries.append(self._unreadable_item(span))
                continue
            tp = (msg.topic(), msg.partition())
            if self.unreadable.stale(tp):
                continue
            if self.unreadable.searching(tp):
                answered, span = self.unreadable.take_record(tp, msg.offset())
                if span is not None:
                    entries.append(self._unreadable_item(span))
                if answered:
                    continue
            self.stall.read(tp, msg.offset())
            entries.append(to_record(msg))
        records = [e for e in entries if isinstance(e, codec.Record)]
        self.metrics.messages_in.inc(len(records))
        decoded = iter(intake(records, self.classifier, self.s.max_text_chars))
        items = [next(decoded) if isinstance(e, codec.Record) else e for e in entries]
        for n, item in enumerate(items):
            if not self.batcher.fits(len(item.ids)) and not self.dispatch():
                return  # aborted and rewound: the rest of the chunk is read again
            self.batcher.add(item, len(item.ids))
            more = n + 1 < len(items)
            if more and self.batcher.ready() and not self.dispatch():
                return

    def _consumer_error(self, msg: Any, err: KafkaError) -> Span | None:
        """Count and log it (rate-limited); a Span when it ends an unreadable span's search."""
        if err.code() == KafkaError._PARTITION_EOF:
            return None
        code, text = err.name(), self.s.kafka.scrub(err.str())
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        self.metrics.consumer_errors.labels(code).inc()
        where = {"topic": topic, "partition": partition, "offset": offset}
        log.warning("consumer_error", code=code, **where, error=text)
        if topic is None or partition is None or partition < 0 or offset is None:
            return None
        self.stall.error((topic, partition), f"{code}: {text}")
        return self.unreadable.on_error((topic, partition), offset, code, text)

    def _unreadable_item(self, span: Span) -> Item:
        """A pointer dead letter standing at the span's last offset (worker.unreadable)."""
        log.warning(
            "unreadable_span",
            topic=span.topic,
            partition=span.partition,
            first=span.first,
            last=span.last,
            code=span.code,
            error=span.error,
        )
        record = codec.Record(span.topic, span.partition, span.last, None, None, [], None)
        reason = f"the Kafka client cannot deliver offsets {span.first}-{span.last}: {span.error}"
        return Item(record, codec.Unreadable(record, "fetch", span.code, reason, span.first), [])

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(topic, partition, offset))

    def _high_watermark(self, topic: str, partition: int) -> int | None:
        """The partition's end, as last fetched, else as the broker says; None: unknown."""
        tp = TopicPartition(topic, partition)
        try:
            high = self.consumer.get_watermark_offsets(tp, cached=True)[1]
            if high < 0:
                high = self.consumer.get_watermark_offsets(tp, timeout=WATERMARK_TIMEOUT_S)[1]
        except KafkaException:
            return None
        return high if high >= 0 else None

    # -- every TICK_S --------------------------------------------------------------

    def tick(self) -> None:
        """Probes that got no answer, stalled partitions, and logs the limiter owes."""
        self._next_tick = self.clock() + TICK_S
        self.unreadable.resend_stale()
        self.check_stalls()
        log_limit.flush(log)

    def check_stalls(self) -> None:
        assigned = self.consumer.assignment()
        if not assigned:
            return
        try:
            positions = {
                (tp.topic, tp.partition): tp.offset for tp in self.consumer.position(assigned)
            }
        except KafkaException:
            return

        def unread(tp: tuple[str, int]) -> bool:
            position = positions.get(tp, -1)
            if position < 0:
                return False
            try:
                high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)[1]
            except KafkaException:
                return False
            return 0 <= position < high

        for (topic, partition), stalled in self.stall.check(unread).items():
            self.metrics.partition_stalled.labels(topic, str(partition)).set(stalled is not None)
            if stalled is not None and stalled.log:
                log.warning(
                    "partition_stalled",
                    topic=topic,
                    partition=partition,
                    seconds=round(stalled.seconds),
                    committed=stalled.committed,
                    position=positions.get((topic, partition)),
                    last_error=stalled.last_error,
                )

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
        # Closed by size or tokens, not by its deadline; judged before the wait below, which
        # can outlast the deadline of a batch that filled at once.
        full = len(self.batcher) >= self.batcher.limits.max_size or self.batcher.time_left() > 0
        if self.flights:
            self._await(self.flights[-1])  # the model thread is free once this returns
        items = self._take()
        if items:
            self.flights.append(self._start(items, full))
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

    def _take(self) -> list[Item]:
        """The open batch, taken whole; when it opened is kept for its trace."""
        self._opened_at = self.batcher.opened_at
        return self.batcher.take()

    def _start(self, items: list[Item], full: bool = False) -> Flight:
        started_wall_ms = time.time() * 1000
        model = self.classifier if self.live is None else self.live.model_for(len(items), full)
        trace = OFF if self.tracer is None else self._trace(items, model)
        future = self._model_thread.submit(trace.infer, forward, model, items, self._probe)
        # Counted when the passes ran, also for a batch an abort or a loss drops later.
        future.add_done_callback(self._count_model_calls)
        serving = None
        if self.reference is not None:  # queued behind the candidate on the model thread
            serving = self._model_thread.submit(_forward_serving, self.reference, items)
        return Flight(items, future, started_wall_ms, serving=serving, trace=trace)

    def _trace(self, items: list[Item], model: Model) -> BatchTrace:
        """The batch's trace, opened when its first record was taken in (clock -> epoch)."""
        assert self.tracer is not None
        age_s = 0.0 if self._opened_at is None else max(0.0, self.clock() - self._opened_at)
        return self.tracer.batch(items, time.time_ns() - int(age_s * 1e9), model.model_info)

    def _count_model_calls(self, future: Future[Outputs]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.metrics.model_calls.inc(future.result().model_calls)

    def _await(self, flight: Flight) -> None:
        if flight.result is None:
            flight.result = resolve(self.wait_keeping_membership(flight.future))

    def _complete(self, flight: Flight) -> bool:
        """Route and commit one batch whose forward pass is done (waiting for it if not);
        its trace is the current one meanwhile, and ends with it."""
        with flight.trace.current():
            return self._route_and_commit(flight)

    def _route_and_commit(self, flight: Flight) -> bool:
        self._await(flight)
        assert flight.result is not None
        result, items = flight.result, flight.items
        if result.model_broken:
            flight.trace.end("model_broken")
            self._model_failed(result)
            return False
        self.broken_batches = 0
        self.metrics.model_failing_batches.set(0)
        outgoing = route_batch(
            items,
            result,
            self.classifier.model_info,
            self.policy,
            self.s.topics,
            flight.started_wall_ms,
        )
        outgoing = flight.trace.continued(items, outgoing)
        agreements: list[dict[str, bool]] = []
        if flight.serving is not None and self.reference is not None:
            serving = resolve(self.wait_keeping_membership(flight.serving)).results
            outgoing, agreements = shadow.wrap(
                outgoing,
                result.results,
                serving,
                self.reference.policy,
                self.reference.model.model_info,
                self.s.topics.shadow,
            )
        picks = [] if self.sampler is None else self.sampler.pick(items, outgoing, result.results)
        copies = [(items[p.index].record, self._review_copy(p, outgoing[p.index])) for p in picks]
        with flight.trace.commit():
            committed = self.committer.commit(
                [(item.record, out) for item, out in zip(items, outgoing, strict=True)], copies
            )
        if committed is None:
            flight.trace.end("aborted")
            self._drop_flights("aborted")  # read again after the rewind, like the batcher's
            self.rewind()
            return False
        self._count_learning(picks, committed.kept, agreements)
        kept = [items[i] for i in committed.kept]
        self._count_committed(kept)
        results = [result.results[i] for i in committed.kept]
        now_ms = time.time() * 1000
        ms = result.inference_ms
        self.metrics.observe_batch(
            kept,
            committed.outgoing,
            results,
            ms if result.predicted else None,
            flight.started_wall_ms,
            now_ms,
        )
        debug = self.s.log_level == "debug"
        log_committed(kept, committed.outgoing, ms, result.predicted, self.s.log_text, debug)
        flight.trace.end("committed", len(kept))
        return True

    def _drop_flights(self, why: str) -> None:
        """Forget every batch in flight (each is read again), ending its trace."""
        for flight in self.flights:
            flight.trace.end(why)
        self.flights.clear()

    def _count_committed(self, kept: list[Item]) -> None:
        """Offsets moved (the stall watch), and the unreadable spans committed past."""
        moved = {(i.record.topic, i.record.partition): i.record.offset + 1 for i in kept}
        self.stall.committed(sorted(moved.items()))
        for item in kept:
            if isinstance(item.outcome, codec.Unreadable):
                r, span = item.record, item.outcome
                labels = (r.topic, str(r.partition), span.error_type)
                self.metrics.unreadable_spans.labels(*labels).inc()
                self.metrics.unreadable_offsets.labels(*labels).inc(
                    r.offset - span.first_offset + 1
                )

    def _review_copy(self, pick: Pick, out: Outgoing) -> Outgoing:
        """A routed result's copy for the review queue, keyed by its message."""
        assert out.value is not None  # picks are routed results, never dead letters
        return Outgoing(self.s.topics.review, out.key, review_value(pick, out.value), out.headers)

    def _count_learning(
        self, picks: list[Pick], kept: list[int], agreements: list[dict[str, bool]]
    ) -> None:
        if self.sampler is not None:
            owned = set(kept)
            taken = [p for p in picks if p.index in owned]
            self.sampler.taken(taken)
            for pick in taken:
                self.metrics.review_queued.labels(pick.reason).inc()
            near, budget = self.sampler.skipped_near_copy, self.sampler.skipped_budget
            self.sampler.skipped_near_copy = self.sampler.skipped_budget = 0
            self.metrics.review_skipped.labels("near_copy").inc(near)
            self.metrics.review_skipped.labels("budget").inc(budget)
        for agree in agreements:
            for head, same in agree.items():
                self.metrics.shadow_compared.labels(head).inc()
                if same:
                    self.metrics.shadow_agreed.labels(head).inc()

    # -- hot swap ------------------------------------------------------------------

    def swap(self) -> None:
        """Between batches: commit what is held, load what model.path points to, go on.

        Everything held was tokenized for the old model, so it is routed and committed by
        it first; every result carries the version that made it. The load runs on the
        model thread (its OpenMP pool), with polling kept alive while it takes.
        """
        assert self.watch is not None and self.reload is not None
        if not self.drain() or (len(self.batcher) and not self.process(self._take())):
            return  # aborted and rewound: try again on the next turn
        old = self.classifier.model_info
        try:
            swapped = self.wait_keeping_membership(self._model_thread.submit(self.reload))
        except Exception as exc:  # noqa: BLE001 - any load failure leaves the old model serving
            to = str(self.watch.path)
            self.watch.refused(os.path.realpath(to))
            self.metrics.model_swaps.labels("failed").inc()
            log.error("model_swap_failed", serving=old["version"], target=to, error=str(exc)[:500])
            return
        self.classifier, self.policy, self.live = swapped.model, swapped.policy, swapped.live
        self._probe = swapped.model.tokenize([PROBE_TEXT]).ids[0]
        self.watch.swapped(swapped.target)
        self.metrics.model_swaps.labels("swapped").inc()
        self.metrics.model_version.clear()
        new = swapped.model.model_info
        self.metrics.model_version.labels(new["name"], new["version"]).set(1)
        log.info(
            "model_swapped",
            from_version=old["version"],
            to_version=new["version"],
            variant=swapped.variant,
            target=swapped.target,
            policy=swapped.policy.name,
        )

    def _model_failed(self, result: BatchResult) -> None:
        """A whole batch failed and so did the probe: the model, not the messages.

        Nothing is dead-lettered (dead letters are for bad messages). The batch is read
        again; after ``model.failing_batches`` such batches in a row the circuit opens:
        ModelBrokenError, and the process leaves the group so a healthy replica takes
        the partitions.
        """
        self.broken_batches += 1
        self.metrics.model_failing_batches.set(self.broken_batches)
        error = repr(next((r.error for r in result.results if isinstance(r, Failure)), None))
        log.error(
            "model_failing",
            batches_in_row=self.broken_batches,
            limit=self.s.model.failing_batches,
            error=error,
        )
        self._drop_flights("model_broken")
        self.rewind()
        if self.broken_batches >= self.s.model.failing_batches:
            self.health.model_ready = False
            raise ModelBrokenError(
                f"{self.broken_batches} batches in a row failed whole, and so did a probe "
                f"message; last error: {error}"
            )

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

    def rewind(self) -> None:
        """Seek every assigned partition to its committed offset; drop what is held."""
        self.batcher.take()
        self.carry = []  # fetched before the seek: the rewind reads them again
        self.unreadable.forget()  # the error, read again, starts its search again
        if self.live is not None:
            self.live.interrupted()  # the next cycle holds the rewind, not a batch
        seek_to_committed(self.consumer, self.s.commit_timeout_s, beat=self.health.beat)

    # -- rebalance callbacks (called from inside consume()) -----------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=names(partitions))
        # Outlasts a previous owner's open transaction (worker.kafka.positions).
        wait_s = self.s.transaction_timeout_ms / 1000 + self.s.commit_timeout_s
        assign_at_committed(self.consumer, partitions, wait_s, beat=self.health.beat)
        self.stall.assigned((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned(partitions, sorted(UNREADABLE_CODES))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit the batches in hand before their partitions go to another member."""
        in_flight = sum(len(f.items) for f in self.flights)
        log.info(
            "partitions_revoked",
            partitions=names(partitions),
            held=len(self.batcher),
            in_flight=in_flight,
        )
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.forget_partitions(partitions)
        self.stall.revoked(gone)
        self.unreadable.forget(gone)
        if self._waiting:
            # Called from the poll inside a wait: a commit here would overtake the batch
            # being waited for. Forget the held records of the revoked partitions (the new
            # owner reads them from the committed offset). The batches in flight keep
            # theirs, but the commit sends nothing for a partition this member no longer
            # owns (worker.kafka.commit, step 1).
            self._forget(gone)
            return
        if not self.drain():
            return
        if any((i.record.topic, i.record.partition) in gone for i in self.batcher.items):
            self.process(self._take())
        self._forget(gone)  # carried records of the revoked partitions

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost, not revoked: our generation is gone and a commit would fail. Drop them."""
        log.warning(
            "partitions_lost",
            partitions=names(partitions),
            held=len(self.batcher),
            in_flight=sum(len(f.items) for f in self.flights),
        )
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.forget_partitions(partitions)
        self.stall.revoked(gone)
        self.unreadable.forget()  # the seeks below move the partitions still owned too
        held = [i for f in self.flights for i in f.items] + self.batcher.take()
        self._drop_flights("lost")
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
