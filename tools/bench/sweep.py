"""The batch sweep: model-only msg/s (C's timing) at several batch limits, per precision
and layout. ``python -m tools.bench --batch-sweep 64,256,512`` prints it; tools/gpu_check.py
runs it for every precision a GPU serves.

A batch of N messages may hold ``N * TOKENS_PER_MESSAGE`` tokens, and closes at whichever
limit it reaches first, as the worker's batcher closes it (``worker.batching``). The noisy
test's messages average about 20 tokens, so the size closes nearly every batch and the
budget caps only batches of long messages, as it does in the worker.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch

from tools.bench.figures import spread
from tools.bench.model import message_set, time_forward
from tools.bench.run import PACKED, PADDED, Candidate
from worker.batching import Batcher, BatchLimits

T = TypeVar("T")

# 512 messages -> 16,384 tokens: the worker's batch limits on a GPU (settings.GPU_BATCHING).
TOKENS_PER_MESSAGE = 32
# How many messages each precision classifies to compare its labels with the first row's.
AGREEMENT_MESSAGES = 2000


def token_budget(size: int) -> int:
    return size * TOKENS_PER_MESSAGE


def parse_sizes(text: str) -> list[int]:
    """``"64,256,512"`` -> [64, 256, 512] (argparse's type for --batch-sweep)."""
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"batch sizes must be positive integers: {text!r}")
    return sizes


def batches(ids: Sequence[list[int]], size: int, tokens: int) -> list[list[list[int]]]:
    """``ids`` in arrival order, cut where the worker's batcher would close each batch."""
    batcher: Batcher[list[int]] = Batcher(BatchLimits(size, tokens, 0.0))
    out = []
    for x in ids:
        if not batcher.fits(len(x)):
            out.append(batcher.take())
        batcher.add(x, len(x))
    if len(batcher):
        out.append(batcher.take())
    return out


def figure(values: Sequence[float]) -> dict[str, Any]:
    """A figure from repeated runs: their median, min and max, their ``spread``
    (tools.bench.figures), and every run."""
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "spread": spread(values),
        "runs": [float(v) for v in values],
    }


def error_text(exc: BaseException) -> str:
    """One line for the JSON: the type and the first line of the message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def repeat(run: Callable[[], T], repeats: int, seconds: float) -> list[T]:
    """``run()`` up to ``repeats`` times, stopping early once ``seconds`` have passed, but
    only after two runs (one when ``repeats`` is 1), so that every figure has a spread."""
    runs: list[T] = []
    started = time.monotonic()
    while len(runs) < repeats and (
        len(runs) < min(2, repeats) or time.monotonic() - started < seconds
    ):
        runs.append(run())
    return runs


def time_sizes(
    classifier: Any,
    ids: Sequence[list[int]],
    sizes: Sequence[int],
    repeats: int,
    seconds: float,
    stop_at: float,
) -> list[dict[str, Any]]:
    """One row per batch size: ``repeats`` passes over ``ids``, fewer once a row has run
    for ``seconds`` (at least two, for a spread), none once ``stop_at`` (monotonic) has
    passed. A row that fails (out of memory, a kernel missing for this dtype) records
    its error; the next size still runs."""
    rows = []
    for size in sizes:
        row: dict[str, Any] = {"batch_size": size, "batch_tokens": token_budget(size)}
        rows.append(row)
        if time.monotonic() > stop_at:
            row["skipped"] = "the check's time budget ran out"
            continue
        try:
            chunks = batches(ids, size, token_budget(size))
            time_forward(classifier, chunks[:2], size)  # this size's first shapes, untimed
            runs = repeat(partial(time_forward, classifier, chunks, size), repeats, seconds)
        except Exception as exc:  # noqa: BLE001 - a failing row is a result too
            row["error"] = error_text(exc)
            continue
        row.update(
            msgs_per_s=figure([r["msgs_per_s"] for r in runs]),
            batch_ms=figure([r["batch_ms"] for r in runs]),
            batches=len(chunks),
            mean_batch=runs[0]["mean_batch"],
            padding_fraction=runs[0]["padding_fraction"],
        )
    return rows


def top_labels(classifier: Any, texts: Sequence[str]) -> dict[str, list[int]]:
    out = classifier.predict_texts(texts)
    return {h: top.tolist() for h, top in out.top.items()}


def agreement(top: dict[str, list[int]], reference: dict[str, list[int]]) -> dict[str, float]:
    """Per head, the share of messages labelled as the reference labels them; ``all``:
    every head alike."""
    n = len(next(iter(reference.values())))
    same = {h: [a == b for a, b in zip(top[h], reference[h], strict=True)] for h in reference}
    out = {h: sum(hits) / n for h, hits in same.items()}
    out["all"] = sum(all(col) for col in zip(*same.values(), strict=True)) / n
    return out


def release(device: str) -> None:
    """Free the last classifier's memory before the next is built (GPU memory above all)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def sweep(
    model: Path,
    device: str,
    dtypes: Sequence[str],
    texts: Sequence[str],
    sizes: Sequence[int],
    repeats: int,
    seconds: float,
    stop_at: float = float("inf"),
    layouts: Sequence[Candidate] = (PADDED, PACKED),
) -> dict[str, Any]:
    """Every dtype x layout x batch size, one row each; per dtype and layout, how often
    its labels agree with the first one's (float32 padded, the base, by default).

    Call it on the thread that runs the model (worker.model_thread): every classifier is
    built, warmed and timed here.
    """
    rows: list[dict[str, Any]] = []
    agree: dict[str, dict[str, float]] = {}
    reference: dict[str, list[int]] | None = None
    sample = texts[:AGREEMENT_MESSAGES]
    for dtype in dtypes:
        for layout in layouts:
            name = {"dtype": dtype, "layout": layout.name}
            if time.monotonic() > stop_at:
                rows += [{**name, "batch_size": s, "skipped": "time budget"} for s in sizes]
                continue
            try:
                clf = layout.classifier(model, device, dtype)
                clf.warmup(min(sizes))
                top = top_labels(clf, sample)
                ids = clf.tokenize(texts).ids
            except Exception as exc:  # noqa: BLE001 - a dtype this device cannot run is a result
                rows += [{**name, "batch_size": s, "error": error_text(exc)} for s in sizes]
                release(device)
                continue
            reference = reference or top
            agree[f"{dtype}, {layout.name}"] = agreement(top, reference)
            for row in time_sizes(clf, ids, sizes, repeats, seconds, stop_at):
                rows.append({**name, "precision": clf.precision, **row})
            del clf
            release(device)
    return {"rows": rows, "agreement": agree, "agreement_messages": len(sample)}


def best(rows: Sequence[dict[str, Any]], within: float = 0.05) -> dict[str, Any] | None:
    """The largest batch size within ``within`` of the fastest among ``rows`` that ran: past
    that size a bigger batch buys no speed, only latency; up to it, it amortizes the
    host's work per batch in the worker."""
    ran = [r for r in rows if "msgs_per_s" in r]
    if not ran:
        return None
    top = max(r["msgs_per_s"]["median"] for r in ran)
    return max(
        (r for r in ran if r["msgs_per_s"]["median"] >= (1 - within) * top),
        key=lambda r: r["batch_size"],
    )


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The sweep as markdown: a row per dtype, layout and batch size."""
    lines = [
        "| dtype | layout | batch | tokens | msg/s (median) | min-max (spread) | batch ms "
        "| padding |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = r["batch_size"]
        head = f"| {r['dtype']} | {r['layout']} | {size} | {token_budget(size)} |"
        if "msgs_per_s" not in r:
            why = r.get("error") or r.get("skipped") or "?"
            lines.append(f"{head} {why[:70]} | | | |")
            continue
        m = r["msgs_per_s"]
        lines.append(
            f"{head} {m['median']:,.0f} | {m['min']:,.0f}-{m['max']:,.0f} ({m['spread']:.0%}) | "
            f"{r['batch_ms']['median']:.2f} | {r['padding_fraction']:.2f} |"
        )
    return "\n".join(lines)


def main(args: Any) -> dict[str, Any]:
    """``python -m tools.bench --batch-sweep``: the sweep at ``--dtype`` on ``--device``."""
    from tools.bench.run import cpu
    from worker.model_thread import model_executor
    from worker.serving import pin_tokenizer_threads

    if args.threads:
        torch.set_num_threads(args.threads)
    pin_tokenizer_threads()
    examples, source = message_set(1000 if args.quick else 5000)
    texts = [ex.text for ex in examples]
    repeats = args.repeats or (1 if args.quick else 3)
    model_thread = model_executor()
    result: dict[str, Any] = model_thread.submit(
        sweep, args.model, args.device, [args.dtype], texts, args.batch_sweep, repeats, 5.0
    ).result()
    model_thread.shutdown()
    result |= {
        "machine": {"cpu": cpu(), "torch": torch.__version__, "device": args.device},
        "messages": {"source": source, "n": len(texts)},
        "tokens_per_message": TOKENS_PER_MESSAGE,
        "repeats": repeats,
    }
    return result
