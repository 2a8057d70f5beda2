"""The collector's SQLite store (DIR/collect.sqlite): corrections, the routed index, erasures.

Every write is one SQLite transaction, committed (synchronous=FULL) before the Kafka
transaction that moves the feedback group past the same records, and idempotent, so a
chunk applied twice (a crash between the two commits) changes nothing the second time:

- ``corrections``: the winning Feedback per message_id (``join.latest`` decides).
- ``applied``: per feedback partition, the next offset already applied here. Not the
  read position (the consumer group owns that); it keeps a re-read record from being
  counted twice, and it can never be behind the group's committed offset.
- ``routed_index`` / ``routed_positions``: message_id -> (topic, partition, offset) of
  its routed result, and how far each route/review partition was indexed; one
  transaction holds both, so the index is exactly the records before the positions.
- ``routed``: the fields a row needs, only for corrected messages (text is stored for
  nobody else); a NULL ``result`` marks a record that is gone or unreadable.
- ``erased``: sha256 of customer ids that asked to be forgotten.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from schemas.learning import Feedback
from trainer.feedback.errors import StoreError
from trainer.feedback.join import Correction, Routed, customer_hash, is_erased, latest
from trainer.feedback.records import IndexEntry

STORE_FILE: Final = "collect.sqlite"
LOCK_FILE: Final = "collect.lock"
SCHEMA_VERSION: Final = "1"
COUNTERS: Final = (
    "feedback_read",
    "feedback_valid",
    "feedback_invalid",
    "feedback_superseded",
    "routed_indexed",
    "routed_unreadable",
    "erased_dropped",  # kept out by collect: fetched after the customer was erased
    "erased_removed",  # taken out by forget
)
# SQLite's bound-parameter limit is 32766; a chunk of ids stays far below it.
_IDS_PER_QUERY: Final = 500

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
-- at_us, partition, offset: the latest-wins key (join.Correction.order), for a reader.
CREATE TABLE IF NOT EXISTS corrections (
    message_id TEXT PRIMARY KEY, at_us INTEGER NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, feedback TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS routed_positions (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS routed_index (
    message_id TEXT PRIMARY KEY, classified_us INTEGER NOT NULL, rank INTEGER NOT NULL,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS routed (
    message_id TEXT PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, customer_hash TEXT, result TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS routed_by_customer ON routed (customer_hash);
CREATE TABLE IF NOT EXISTS erased (customer_hash TEXT PRIMARY KEY) WITHOUT ROWID;
"""

# The index keeps, per message, the latest routing, then the route topic's copy over the
# review queue's, then the highest coordinates: a total order, so the entry kept does not
# depend on which topic was read first.
_INDEX_UPSERT: Final = """
INSERT INTO routed_index VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET
    classified_us = excluded.classified_us, rank = excluded.rank, topic = excluded.topic,
    partition = excluded.partition, offset = excluded.offset
WHERE (excluded.classified_us, excluded.rank, excluded.topic, excluded.partition,
       excluded.offset)
    > (routed_index.classified_us, routed_index.rank, routed_index.topic,
       routed_index.partition, routed_index.offset)
"""


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold DIR's lock: one collect or forget at a time on a data set."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{directory}: another collect or forget is running on it") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Store:
    """One open collect.sqlite; every method that writes is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE of _txn.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA synchronous = FULL")  # durable before the Kafka commit
        self._db.executescript(_SCHEMA)  # idempotent; executescript commits on its own
        with self._txn():
            found = self._meta("schema_version")
            if found is None:
                self._set_meta("schema_version", SCHEMA_VERSION)
            elif found != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: store schema {found}; this version reads {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        got = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if got is None else str(got[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _add(self, **deltas: int) -> None:
        self._db.executemany(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            [(k, v) for k, v in deltas.items() if v],
        )

    def bind_group(self, group: str) -> None:
        """A store belongs to one consumer group: its offsets and this store move together."""
        with self._txn():
            bound = self._meta("group")
            if bound is None:
                self._set_meta("group", group)
            elif bound != group:
                raise StoreError(
                    f"{self.path} was collected with group {bound!r}, not {group!r}: pass "
                    f"--group {bound}, or --out a new directory for the new group"
                )

    def group(self) -> str | None:
        return self._meta("group")

    def applied(self, topic: str) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT partition, next_offset FROM applied WHERE topic = ?", (topic,)
        )
        return {int(p): int(n) for p, n in rows}

    def apply_feedback(
        self,
        topic: str,
        valid: Sequence[Correction],
        invalid: Sequence[tuple[int, int]],
        positions: dict[int, int],
    ) -> int:
        """Upsert a chunk's corrections (latest wins), count it once, and note how far it
        reached; returns how many of its records were new to this store."""
        with self._txn():
            done = self.applied(topic)
            fresh = [c for c in valid if c.offset >= done.get(c.partition, 0)]
            bad = [(p, o) for p, o in invalid if o >= done.get(p, 0)]
            held = self._corrections({c.message_id for c in fresh})
            winners, superseded = latest([*held.values(), *fresh])
            self._db.executemany(
                "INSERT OR REPLACE INTO corrections VALUES (?, ?, ?, ?, ?)",
                [
                    (c.message_id, c.order[0], c.partition, c.offset, c.feedback.model_dump_json())
                    for c in winners.values()
                    if held.get(c.message_id) != c
                ],
            )
            self._add(
                feedback_read=len(fresh) + len(bad),
                feedback_valid=len(fresh),
                feedback_invalid=len(bad),
                feedback_superseded=superseded,
            )
            self._db.executemany(
                "INSERT INTO applied VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                [(topic, p, n) for p, n in positions.items()],
            )
            return len(fresh) + len(bad)

    def _corrections(self, ids: Iterable[str]) -> dict[str, Correction]:
        out: dict[str, Correction] = {}
        wanted = sorted(ids)
        for i in range(0, len(wanted), _IDS_PER_QUERY):
            part = wanted[i : i + _IDS_PER_QUERY]
            rows = self._db.execute(
                "SELECT feedback, partition, offset FROM corrections "
                f"WHERE message_id IN ({','.join('?' * len(part))})",
                part,
            )
            for c in (_correction(*r) for r in rows):
                out[c.message_id] = c
        return out

    def corrections(self) -> list[Correction]:
        rows = self._db.execute(
            "SELECT feedback, partition, offset FROM corrections ORDER BY message_id"
        )
        return [_correction(*r) for r in rows]

    def routed_positions(self) -> dict[tuple[str, int], int]:
        rows = self._db.execute("SELECT topic, partition, next_offset FROM routed_positions")
        return {(str(t), int(p)): int(n) for t, p, n in rows}

    def index(
        self,
        entries: Sequence[IndexEntry],
        unreadable: int,
        positions: dict[tuple[str, int], int],
    ) -> None:
        """Index a chunk of routed results and move the positions past it, together."""
        with self._txn():
            self._db.executemany(
                _INDEX_UPSERT,
                [(e.message_id, e.classified_us, e.rank, *e.coordinates) for e in entries],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO routed_positions VALUES (?, ?, ?)",
                [(t, p, n) for (t, p), n in positions.items()],
            )
            self._add(routed_indexed=len(entries), routed_unreadable=unreadable)

    def wanted(self) -> list[IndexEntry]:
        """Corrected messages whose routed result is indexed and not yet fetched from there."""
        rows = self._db.execute(
            "SELECT i.message_id, i.topic, i.partition, i.offset, i.classified_us, i.rank "
            "FROM corrections c JOIN routed_index i USING (message_id) "
            "LEFT JOIN routed r USING (message_id) "
            "WHERE r.message_id IS NULL OR (r.topic, r.partition, r.offset) "
            "    != (i.topic, i.partition, i.offset) "
            "ORDER BY i.topic, i.partition, i.offset"
        )
        return [
            IndexEntry(str(m), str(t), int(p), int(o), int(c), int(k)) for m, t, p, o, c, k in rows
        ]

    def save_routed(self, fetched: Sequence[tuple[IndexEntry, Routed | None]]) -> int:
        """Keep fetched results (None: gone or unreadable); an erased customer's message
        loses its correction instead. Returns how many were dropped for erasure."""
        with self._txn():
            erased = self.erased()
            dropped = {e.message_id for e, r in fetched if r is not None and is_erased(r, erased)}
            self._delete(sorted(dropped))
            self._db.executemany(
                "INSERT OR REPLACE INTO routed VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.message_id,
                        *e.coordinates,
                        None
                        if r is None or r.customer_id is None
                        else customer_hash(r.customer_id),
                        None if r is None else r.to_json(),
                    )
                    for e, r in fetched
                    if e.message_id not in dropped
                ],
            )
            self._add(erased_dropped=len(dropped))
            return len(dropped)

    def _delete(self, ids: Sequence[str]) -> None:
        self._db.executemany("DELETE FROM corrections WHERE message_id = ?", [(i,) for i in ids])
        self._db.executemany("DELETE FROM routed WHERE message_id = ?", [(i,) for i in ids])

    def routed(self) -> dict[str, Routed | None]:
        """Per corrected message with an indexed result: the result, or None if unavailable."""
        rows = self._db.execute(
            "SELECT message_id, r.result FROM corrections JOIN routed r USING (message_id)"
        )
        return {str(m): None if res is None else Routed.from_json(res) for m, res in rows}

    def erased(self) -> frozenset[str]:
        return frozenset(str(h) for (h,) in self._db.execute("SELECT customer_hash FROM erased"))

    def counters(self) -> dict[str, int]:
        got = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {name: int(got.get(name, 0)) for name in COUNTERS}

    def forget(self, customer_id: str) -> int:
        """Erase a customer: their messages leave the store, and never come back (their
        hash stays in ``erased``). Returns how many corrected messages were removed."""
        h = customer_hash(customer_id)
        with self._txn():
            self._db.execute("INSERT OR IGNORE INTO erased VALUES (?)", (h,))
            ids = [
                str(m)
                for (m,) in self._db.execute(
                    "SELECT message_id FROM routed WHERE customer_hash = ?", (h,)
                )
            ]
            self._delete(ids)
            self._add(erased_removed=len(ids))
            return len(ids)


def _correction(feedback: str, partition: int, offset: int) -> Correction:
    return Correction(Feedback.model_validate_json(feedback), int(partition), int(offset))
