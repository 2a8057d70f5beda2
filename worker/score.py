"""File scoring: inbound messages as JSON lines in, the worker's results as JSON lines out.

``support-worker score --in messages.jsonl --out routed.jsonl``. Each input line is what a
chat platform produces to ``support.inbound``; each output line is the outbound message
the worker would publish for it, in input order, through ``worker.router.Router`` (the
same intake, batches, forward pass and ``route_batch``). A line the worker would
dead-letter goes to the dead-letter file instead, with its reason, so every non-blank line
ends in exactly one of the two files.

A record's source is ``<file name>`` partition 0 at the line's number (from 1), so a
result or a dead letter names the line it came from. Lines are read in chunks of a few
batches, and the next chunk is decoded and tokenized while the model runs the current
one. Both files are written beside their final names and renamed when the input is done,
so an interrupted run leaves no half file under the name a later step reads.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from schemas import messages as m
from worker import codec
from worker.intake import Item, intake
from worker.outgoing import Outgoing
from worker.router import Router

# A line longer than this is not read into memory: it becomes a dead letter that keeps
# its length and sha256 (Kafka's largest record the worker reads is 64 MiB; a text is
# at most max_text_chars).
MAX_LINE_BYTES = 8 * 1024 * 1024
CHUNK_BATCHES = 8  # lines read, decoded and tokenized ahead of the model, in batches


@dataclass
class ScoreCounts:
    lines: int = 0  # non-blank lines read
    blank: int = 0  # blank lines, skipped: no message
    routed: int = 0
    dead: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        return {
            "lines": self.lines,
            "routed": self.routed,
            "dead_letters": self.dead,
            "blank_skipped": self.blank,
            "routes": dict(sorted(self.routes.items())),
            "seconds": round(self.seconds, 2),
            "msg_per_s": round(rate, 1),
        }


@dataclass(frozen=True)
class Oversized:
    """A line past ``MAX_LINE_BYTES``: its number, length and digest, never its bytes."""

    number: int
    length: int
    sha256: str


def read_lines(
    src: IO[bytes], source: str, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[codec.Record | Oversized | None]:
    """One record per non-blank line (None for a blank one), numbered from 1."""
    number = 0
    while True:
        line = src.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            yield _skip_rest(src, number, line, max_line_bytes)
            continue
        line = line.rstrip(b"\r\n")
        if not line.strip():
            yield None
            continue
        yield codec.Record(source, 0, number, None, line, [], None)


def _skip_rest(src: IO[bytes], number: int, head: bytes, max_line_bytes: int) -> Oversized:
    digest, length = hashlib.sha256(), 0
    part = head
    while part:
        done = part.endswith(b"\n")
        part = part.rstrip(b"\r\n") if done else part
        digest.update(part)
        length += len(part)
        if done:
            break
        part = src.readline(max_line_bytes)
    return Oversized(number, length, digest.hexdigest())


def dead_letter_line(out: Outgoing) -> bytes:
    """A dead letter as one JSON line: why, where from, and the line as it was."""
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in out.headers}
    body: dict[str, Any] = {
        "line": int(headers[m.HEADER_SOURCE_OFFSET]),
        "stage": headers[m.HEADER_STAGE],
        "error_type": headers[m.HEADER_TYPE],
        "reason": headers[m.HEADER_MESSAGE],
    }
    body.update(_value_field(out.value or b""))
    return orjson.dumps(body) + b"\n"


def _value_field(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode()}


def _oversized_line(o: Oversized, limit: int) -> bytes:
    body = {
        "line": o.number,
        "stage": "decode",
        "error_type": "ValueTooLarge",
        "reason": f"line has {o.length} bytes, limit {limit}",
        "value_sha256": o.sha256,
    }
    return orjson.dumps(body) + b"\n"


def score(
    router: Router,
    src: IO[bytes],
    out: IO[bytes],
    dead: IO[bytes],
    *,
    source: str,
    progress: Callable[[int], None] = lambda _: None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ScoreCounts:
    """Route every line of ``src``; ``progress(n)`` after each chunk of n lines."""
    counts = ScoreCounts()
    started = time.perf_counter()
    size = router.settings.batching.max_batch_size * CHUNK_BATCHES
    chunks = _chunks(read_lines(src, source, max_line_bytes), size)

    # Runs in the one thread ahead, the only one that reads ``src``.
    def prepare() -> _Prepared:
        chunk = next(chunks, [])
        records = [r for r in chunk if isinstance(r, codec.Record)]
        return _Prepared(chunk, intake(records, router.model, router.settings.max_text_chars))

    with ThreadPoolExecutor(1, thread_name_prefix="score-intake") as ahead:
        pending = ahead.submit(prepare)
        while True:
            ready = pending.result()
            if not ready.chunk:
                break
            pending = ahead.submit(prepare)
            routed = (o for batch in router.batches(ready.items) for o in router.route_items(batch))
            for entry in ready.chunk:
                if entry is None:
                    counts.blank += 1
                    continue
                counts.lines += 1
                if isinstance(entry, Oversized):
                    counts.dead += 1
                    dead.write(_oversized_line(entry, max_line_bytes))
                    continue
                o = next(routed)
                if o.is_dead_letter:
                    counts.dead += 1
                    dead.write(dead_letter_line(o))
                else:
                    counts.routed += 1
                    counts.routes[o.route or ""] += 1
                    out.write((o.value or b"") + b"\n")
            progress(len(ready.chunk))
    counts.seconds = time.perf_counter() - started
    return counts


@dataclass(frozen=True)
class _Prepared:
    chunk: list[codec.Record | Oversized | None]
    items: list[Item]


def _chunks(entries: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_file(
    router: Router,
    src: Path | None,
    out: Path,
    dead: Path,
    *,
    progress: Callable[[int], None] = lambda _: None,
) -> ScoreCounts:
    """``score`` from a file (stdin when ``src`` is None) into ``out`` and ``dead``,
    each written as ``<name>.partial`` and renamed when every line is done."""
    partial = [p.with_name(p.name + ".partial") for p in (out, dead)]
    with ExitStack() as files:
        reader = files.enter_context(src.open("rb")) if src else os.fdopen(0, "rb", closefd=False)
        writers = [files.enter_context(p.open("wb")) for p in partial]
        try:
            counts = score(
                router,
                reader,
                writers[0],
                writers[1],
                source=src.name if src else "stdin",
                progress=progress,
            )
        except BaseException:
            for p in partial:
                p.unlink(missing_ok=True)
            raise
    for p, final in zip(partial, (out, dead), strict=True):
        p.replace(final)
    return counts
