"""``support-trainer feedback collect``: agents' corrections as a labeled data set, once.

A batch command: it reads each topic up to the end it saw at the start, then stops.

  1. Lock DIR, open DIR/collect.sqlite, and bind it to the consumer group (``--group``):
     the store and the group's offsets move together, so a store belongs to one group.
  2. Reach Kafka (``kafka.admin_timeout_s``, at most ``--timeout-s``), then
     ``init_transactions()`` with a transactional.id derived from the group: it aborts
     what a crashed run left open and fences a run of the same group still going.
  3. Snapshot the high watermark of every partition of the feedback, route and review
     topics: where this run stops, however much arrives meanwhile.
  4. Index the route and review topics from the store's positions to the snapshot. Per
     chunk, one SQLite transaction holds the entries (message_id -> topic, partition,
     offset; no text) and the positions after them.
  5. Read the feedback topic (read_committed) from the group's committed offsets to the
     snapshot. Per chunk:
       a. decode: valid corrections, and invalid records as dead letters in the worker's
          format (``worker.outgoing.dead_letter``: original key, value and headers, and
          the reason; stage decode or validate);
       b. SQLite: upsert the corrections (the latest wins), count the chunk, note how far
          it reached; commit;
       c. Kafka: begin; produce the chunk's dead letters; ``send_offsets_to_transaction``
          with the group's next offsets; commit (``kafka_write``).
  6. Fetch the routed result of each corrected, indexed message not fetched yet, by its
     coordinates (assign + seek, in batches), and keep what a row needs. A message of an
     erased customer loses its correction instead.
  7. Rebuild the rows from the store (``join``) and replace dataset.jsonl, then
     manifest.json, each atomically.

Why each effect happens exactly once:

- Dead letters live in Kafka, so the position that says whether they were produced must
  commit in the same Kafka transaction (5c): committed, the group starts after them and
  never produces them again; aborted or crashed, neither is visible and the chunk is read
  again. A position kept in SQLite could not be atomic with a Kafka produce.
- Corrections live in SQLite, and 5b commits before 5c. A crash between them leaves the
  store ahead of the group: the chunk is read again and applied again, which changes
  nothing (the latest-wins upsert of the same records, and the store's ``applied`` marks
  keep the counts from doubling). The reverse order could lose a chunk: offsets
  committed, store not. So the store is never behind its group, and step 5 checks it: a
  store behind its group was replaced or lost, and the run stops rather than silently
  missing corrections.
- The index and its positions share one SQLite transaction (4); fetching (6) and the
  files (7) are functions of the store, so running again writes the same bytes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.messages import ROUTES
from trainer.feedback import dataset, kafka_read, kafka_write
from trainer.feedback.errors import FeedbackError, StoreError
from trainer.feedback.join import routed_from
from trainer.feedback.kafka_read import Partition, Span
from trainer.feedback.records import decode_feedback, index_entry, routed_result
from trainer.feedback.store import STORE_FILE, Store, locked
from worker.codec import Record, Rejected
from worker.outgoing import dead_letter
from worker.settings import TopicNames, WorkerSettings

DEFAULT_GROUP: Final = "support-trainer-feedback"
FETCH_BATCH: Final = 1000  # corrected messages fetched per assign


@dataclass(frozen=True)
class CollectOptions:
    out: Path
    group: str = DEFAULT_GROUP
    timeout_s: float = 300.0
    batch_size: int = 500  # records per chunk (one SQLite and at most one Kafka transaction)


@dataclass
class Outcome:
    """What this run did; the data set's totals are in ``manifest``."""

    feedback_read: int = 0  # records new to the store
    dead_letters: int = 0
    routed_read: int = 0
    fetched: int = 0
    complete: bool = True  # False: --timeout-s came first; run again to go on
    skipped_topics: list[str] = field(default_factory=list)
    change: dataset.Change = field(default_factory=lambda: dataset.Change(0, 0, 0))
    manifest: dict[str, Any] = field(default_factory=dict)


def collect(settings: WorkerSettings, opts: CollectOptions) -> Outcome:
    """One collect run (see the module docstring)."""
    deadline = time.monotonic() + opts.timeout_s
    # Step 1
    with locked(opts.out), Store(opts.out / STORE_FILE) as db:
        db.bind_group(opts.group)
        errors = kafka_read.QuietErrors(settings)
        feedback_c = kafka_read.consumer(settings, opts.group, errors)
        reader = kafka_read.consumer(settings, f"{opts.group}-reader", errors)
        try:
            run = _Run(settings, opts, db, feedback_c, reader, deadline)
            return run.go(kafka_write.producer(settings, opts.group, errors))
        finally:
            reader.close()  # neither commits on close: enable.auto.commit is off
            feedback_c.close()


class _Run:
    def __init__(
        self,
        settings: WorkerSettings,
        opts: CollectOptions,
        db: Store,
        feedback_c: Consumer,
        reader: Consumer,
        deadline: float,
    ) -> None:
        self.s, self.opts, self.db = settings, opts, db
        self.feedback_c, self.reader = feedback_c, reader
        self.deadline = deadline
        self.outcome = Outcome()
        t = settings.topics
        self.routed_topics = [t.for_route(r) for r in ROUTES] + [t.review]

    def _left(self, cap: float) -> float:
        return max(1.0, min(cap, self.deadline - time.monotonic()))

    def go(self, producer: Producer) -> Outcome:
        t, o = self.s.topics, self.outcome
        # Step 2
        found = kafka_read.topic_partitions(
            self.reader,
            self.s,
            [t.feedback, t.dlq, *self.routed_topics],
            min(self.s.kafka.admin_timeout_s, self.opts.timeout_s),
        )
        needed = [t.feedback, t.dlq, *(t.for_route(r) for r in ROUTES)]
        missing = [name for name in needed if name not in found]
        if missing:
            raise FeedbackError(
                f"topic(s) {', '.join(missing)} not found at {self.s.kafka.bootstrap_servers} "
                "(support-worker topics apply creates them)"
            )
        o.skipped_topics = [name for name in self.routed_topics if name not in found]
        kafka_write.init(producer, self.s, self._left(self.s.commit_timeout_s))
        # Step 3
        timeout = self._left(self.s.kafka.admin_timeout_s)
        routed_parts = [(name, p) for name in self.routed_topics for p in found.get(name, [])]
        feedback_parts = [(t.feedback, p) for p in found[t.feedback]]
        ends = kafka_read.watermarks(self.reader, [*routed_parts, *feedback_parts], timeout)
        # Step 4
        stored = self.db.routed_positions()
        routed = {k: kafka_read.span(*ends[k], stored.get(k, -1)) for k in routed_parts}
        o.complete &= kafka_read.read(
            self.reader, routed, self.opts.batch_size, self.deadline, self._index
        )
        # Step 5
        feedback = self._feedback_spans(feedback_parts, ends, timeout)
        apply = functools.partial(self._apply, producer)
        o.complete &= kafka_read.read(
            self.feedback_c, feedback, self.opts.batch_size, self.deadline, apply
        )
        # Step 6
        o.complete &= self._fetch()
        # Step 7
        positions = {
            "feedback": _by_topic({k: s.position for k, s in feedback.items()}),
            "routed": _by_topic(self.db.routed_positions()),
        }
        o.change, o.manifest = dataset.publish(self.opts.out, self.db, positions)
        return o

    def _index(self, records: list[Record], positions: dict[Partition, int]) -> None:
        entries = [e for r in records if (e := index_entry(r, self.s.topics.review)) is not None]
        self.db.index(entries, len(records) - len(entries), positions)
        self.outcome.routed_read += len(records)

    def _feedback_spans(
        self,
        parts: list[Partition],
        ends: dict[Partition, tuple[int, int]],
        timeout: float,
    ) -> dict[Partition, Span]:
        """From the group's committed offsets; refused if the store is behind them."""
        committed = kafka_read.committed(self.feedback_c, parts, timeout)
        applied = self.db.applied(self.s.topics.feedback)
        behind = [
            f"partition {p}: store {applied.get(p, ends[(t, p)][0])}, group {committed[(t, p)]}"
            for t, p in parts
            if committed[(t, p)] > applied.get(p, ends[(t, p)][0])
        ]
        if behind:
            raise StoreError(
                f"{self.db.path} has not seen the feedback that group {self.opts.group!r} "
                f"already passed ({'; '.join(behind)}): the store was replaced or lost. "
                "Collect into it with a new --group to read the topic from its start"
            )
        return {k: kafka_read.span(*ends[k], committed[k]) for k in parts}

    def _apply(
        self, producer: Producer, records: list[Record], positions: dict[Partition, int]
    ) -> None:
        # Step 5a
        valid, invalid, letters = [], [], []
        for r in records:
            got = decode_feedback(r)
            if isinstance(got, Rejected):
                invalid.append((r.partition, r.offset))
                letters.append(dead_letter(got, self.s.topics.dlq))
            else:
                valid.append(got)
        # Step 5b
        self.outcome.feedback_read += self.db.apply_feedback(
            self.s.topics.feedback, valid, invalid, {p: n for (_, p), n in positions.items()}
        )
        # Step 5c
        offsets = [TopicPartition(t, p, n) for (t, p), n in positions.items()]
        kafka_write.commit(producer, self.feedback_c, self.s, letters, offsets)
        self.outcome.dead_letters += len(letters)

    def _fetch(self) -> bool:
        """Step 6; False when the deadline left some unfetched."""
        review = self.s.topics.review
        wanted = self.db.wanted()
        for i in range(0, len(wanted), FETCH_BATCH):
            part = wanted[i : i + FETCH_BATCH]
            got = kafka_read.fetch(self.reader, [e.coordinates for e in part], self.deadline)
            fetched = []
            for e in part:
                if e.coordinates not in got:
                    continue  # not reached in time: the next run fetches it
                record = got[e.coordinates]
                result = None if record is None else routed_result(record, review)
                if result is not None and result.message_id != e.message_id:
                    result = None  # not the record the index named: never guess
                fetched.append((e, None if result is None else routed_from(result)))
            self.db.save_routed(fetched)
            self.outcome.fetched += len(fetched)
            if len(fetched) < len(part):
                return False
        return True


def _by_topic(positions: dict[Partition, int]) -> dataset.Positions:
    out: dataset.Positions = {}
    for (t, p), n in sorted(positions.items()):
        out.setdefault(t, {})[str(p)] = n
    return out


def summary(opts: CollectOptions, topics: TopicNames, o: Outcome) -> list[str]:
    """The lines ``collect`` prints at the end."""
    counts = o.manifest["counts"]
    c = o.change
    lines = [
        f"feedback: {o.feedback_read} new record(s) from {topics.feedback}, "
        f"{o.dead_letters} dead-lettered to {topics.dlq}; in all {counts['feedback_read']} "
        f"read, {counts['valid']} valid, {counts['invalid']} invalid, "
        f"{counts['superseded']} superseded",
        f"routed: {o.routed_read} result(s) indexed this run, {o.fetched} fetched for corrections",
        f"data set: {counts['examples']} example(s), {c.added} new, {c.changed} changed, "
        f"{c.removed} removed; unmatched {counts['unmatched']}, unavailable "
        f"{counts['unavailable']}, blank text {counts['blank_text']}, erased {counts['erased']}",
        f"fingerprint {o.manifest['fingerprint']}",
        f"wrote {opts.out / dataset.DATASET_FILE} and {opts.out / dataset.MANIFEST_FILE}",
    ]
    if o.skipped_topics:
        lines.append(f"not found, skipped: {', '.join(o.skipped_topics)}")
    if not o.complete:
        lines.append(
            f"stopped by --timeout-s {opts.timeout_s:g} before the end; progress is kept: "
            "run again to go on"
        )
    return lines
