"""Records the Kafka client cannot deliver: find the smallest unreadable span, skip it.

Some consumer errors name a partition and an offset and never clear: librdkafka does not
move its fetch position past them, and fetches the same offset again after every
``fetch.error.backoff.ms``, forever. Everything behind them on the partition waits.
Which errors those are (librdkafka 2.x, ``src/rdkafka_msgset_reader.c`` and
``src/rdkafka_fetcher.c``; docs/reliability.md has the table):

- a batch it cannot decompress (corrupt, or inflating past ``receive.message.max.bytes``),
  an unsupported codec, a batch that fails its CRC: the error names the batch's FIRST
  offset, whichever offset was fetched;
- an error code in the broker's fetch response for the partition (``CORRUPT_MESSAGE``, ...):
  the error names the offset that was fetched.

A batch error does not say where the batch ends, so this module searches for the end by
fetching: an offset ``x`` lies in the span when a fetch from ``x`` fails again at the
span's first offset, and past it when the fetch delivers a record, or fails at another
offset. Galloping (first + 1, + 3, + 7, ...), capped at the high watermark, then bisecting
finds the last unreadable offset in about 2 log2(span) fetches: one fetch for a single
record. Only offsets whose fetch failed are skipped; never a readable record.

Pure: the pipeline (worker.pipeline) performs the seeks and turns a finished span into a
pointer dead letter that commits with the offset past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# By KafkaError.name(): the errors that recur at the same offset (see the module docstring).
UNREADABLE_CODES = frozenset(
    {
        "_BAD_COMPRESSION",  # decompression failed, or would exceed receive.message.max.bytes
        "_NOT_IMPLEMENTED",  # a compression codec this build of librdkafka lacks
        "_BAD_MSG",  # a batch that fails its CRC (check.crcs) or cannot be parsed
        "CORRUPT_MESSAGE",  # the broker's fetch response: its log holds a corrupt batch
        "MSG_SIZE_TOO_LARGE",  # a record larger than any fetch may return
    }
)
# A fetch that answers nothing in this long (e.g. a probe past the last stable offset,
# behind an open transaction) is sent again.
PROBE_TIMEOUT_S = 10.0

Partition = tuple[str, int]


@dataclass(frozen=True)
class Span:
    """Offsets ``first``..``last`` of one partition that the client cannot deliver."""

    topic: str
    partition: int
    first: int
    last: int
    code: str
    error: str

    @property
    def offsets(self) -> int:
        return self.last - self.first + 1


@dataclass
class Search:
    """Where one partition's unreadable span ends: ``bad`` is in it, ``good`` past it."""

    first: int
    code: str
    error: str
    bad: int  # the highest offset known to be unreadable
    good: int | None  # the lowest offset known to be past the span, once found
    end: int | None  # the high watermark: no span reaches it
    probe: int = -1  # the offset being fetched now
    sent_at: float = 0.0

    def next_probe(self) -> int | None:
        """The next offset to fetch, or None when the span is known: first..bad."""
        if self.good is None:
            # Gallop: first + 1, + 3, + 7, ... (one fetch for the common single record).
            x = self.first + 2 * (self.bad - self.first + 1) - 1
            if self.end is None or x < self.end:
                return x
            self.good = self.end  # past the last record: nothing there to read
        if self.good - self.bad <= 1:
            return None
        return (self.bad + self.good) // 2


class Spans:
    """Per partition, the span being searched; the pipeline feeds it what it consumed.

    ``seek(topic, partition, offset)`` moves the consumer; ``end(topic, partition)`` is the
    high watermark if known; ``clock`` times the probes.
    """

    def __init__(
        self,
        seek: Callable[[str, int, int], None],
        end: Callable[[str, int], int | None],
        clock: Callable[[], float],
    ) -> None:
        self._seek, self._end, self._clock = seek, end, clock
        self.searches: dict[Partition, Search] = {}
        # Partitions sought during the chunk being read: the rest of that chunk was
        # fetched before the seek, so it answers nothing.
        self._sought: set[Partition] = set()

    def new_chunk(self) -> None:
        self._sought.clear()

    def searching(self, tp: Partition) -> bool:
        return tp in self.searches

    def on_error(self, tp: Partition, offset: int, code: str, error: str) -> Span | None:
        """A consumer error for ``tp`` at ``offset``; a Span when its search just ended."""
        if tp in self._sought:
            return None
        search = self.searches.get(tp)
        if search is None:
            if code not in UNREADABLE_CODES or offset < 0:
                return None
            search = Search(offset, code, error, bad=offset, good=None, end=self._end(*tp))
            self.searches[tp] = search
        elif code in UNREADABLE_CODES and offset == search.first:
            search.bad = max(search.bad, search.probe)  # the probe is inside the span
        elif code in UNREADABLE_CODES and offset > search.first:
            # Another span's first offset: the probe is past this span.
            search.good = search.probe if search.good is None else min(search.good, search.probe)
        else:
            return None  # not an answer (a transient error): the probe is sent again later
        return self._step(tp, search)

    def stale(self, tp: Partition) -> bool:
        """Fetched before this chunk's seek of ``tp``: read again after it, so drop it."""
        return tp in self._sought

    def take_record(self, tp: Partition, offset: int) -> tuple[bool, Span | None]:
        """A record of a partition being searched: (whether it answered a probe, a Span
        when the search just ended). An unanswering record is routed as usual."""
        search = self.searches[tp]
        if offset < search.probe:
            # Someone else moved the consumer (a rewind, a loss): the search is stale, and
            # the error, if it is still there, starts a new one.
            del self.searches[tp]
            return False, None
        search.good = search.probe if search.good is None else min(search.good, search.probe)
        return True, self._step(tp, search)

    def _step(self, tp: Partition, search: Search) -> Span | None:
        probe = search.next_probe()
        if probe is None:
            del self.searches[tp]
            self._send(tp, search.bad + 1)  # route from the first readable offset on
            return Span(tp[0], tp[1], search.first, search.bad, search.code, search.error)
        search.probe = probe
        search.sent_at = self._clock()
        self._send(tp, probe)
        return None

    def _send(self, tp: Partition, offset: int) -> None:
        self._sought.add(tp)
        self._seek(tp[0], tp[1], offset)

    def resend_stale(self) -> None:
        """Fetch again every probe that got no answer in PROBE_TIMEOUT_S."""
        now = self._clock()
        for tp, search in self.searches.items():
            if now - search.sent_at > PROBE_TIMEOUT_S:
                if search.end is None:
                    search.end = self._end(*tp)
                search.sent_at = now
                self._send(tp, search.probe)

    def forget(self, partitions: set[Partition] | None = None) -> None:
        """Drop the searches of these partitions (all: a rewind seeks every one)."""
        if partitions is None:
            self.searches.clear()
        else:
            for tp in partitions:
                self.searches.pop(tp, None)
