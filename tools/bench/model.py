"""A, B and C: the model in this process, on the bench's message set."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from time import perf_counter
from typing import Any

import numpy as np
import torch

from schemas.labels import HEADS
from trainer.data import clinc
from worker.model.artifact import LoadedModel
from worker.model.protocol import Model
from worker.model.runner import Runner


def message_set(n: int, seed: int = 7) -> tuple[list[Any], str]:
    """n labelled examples: CLINC test texts after augmentation (labels.md), else synthetic."""
    from trainer.data.splits import DataSpec, build

    path = clinc.default_path()
    found = path is not None and path.exists()
    spec = DataSpec(clinc_path=path, seed=seed) if found else DataSpec(sources=("synthetic",))
    examples = build(spec)["test_noisy"]
    source = "clinc test, augmented" if found else "synthetic"
    return [examples[i % len(examples)] for i in range(n)], source


def rate(n: int, seconds: float) -> float:
    """Messages per second."""
    return n / seconds if seconds > 0 else float("inf")


def padding_fraction(batches: Sequence[Sequence[Sequence[int]]]) -> float:
    """The share of a padded layout that is padding: each batch padded to its longest."""
    real = sum(len(x) for batch in batches for x in batch)
    padded = sum(len(batch) * max(len(x) for x in batch) for batch in batches)
    return 1 - real / padded


def head_accuracy(classifier: Model, examples: Sequence[Any], batch: int) -> dict[str, float]:
    """Accuracy per head of this classifier on labelled examples (the same message set)."""
    ids = classifier.tokenize([ex.text for ex in examples]).ids
    hits = dict.fromkeys(HEADS, 0)
    for i in range(0, len(ids), batch):
        out = classifier.predict(ids[i : i + batch])
        for h, labels in HEADS.items():
            for j, k in enumerate(out.top[h].tolist()):
                hits[h] += labels[k] == examples[i + j].label(h)
    return {h: n / len(examples) for h, n in hits.items()}


def length_stats(classifier: Model, texts: Sequence[str]) -> dict[str, float]:
    lengths = np.array([len(x) for x in classifier.tokenize(texts).ids])
    return {
        "mean": float(lengths.mean()),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
    }


@torch.inference_mode()
def bench_a(loaded: LoadedModel, texts: Sequence[str]) -> float:
    """The notebook's predict(): one tokenizer call and one forward per message."""
    model, tok = loaded.model, loaded.tokenizer
    started = perf_counter()
    for text in texts:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=128, padding=True)
        out = model(enc["input_ids"], enc["attention_mask"])
        _ = {h: int(torch.argmax(out[h], dim=-1).item()) for h in HEADS}
    return rate(len(texts), perf_counter() - started)


@torch.inference_mode()
def bench_b(loaded: LoadedModel, texts: Sequence[str], batch: int) -> float:
    """batch_predict_optimized(): one call per batch, then a per-message loop over tensors."""
    model, tok = loaded.model, loaded.tokenizer
    started = perf_counter()
    for i in range(0, len(texts), batch):
        chunk = list(texts[i : i + batch])
        enc = tok(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = model(enc["input_ids"], enc["attention_mask"])
        _ = [{h: int(torch.argmax(out[h][j]).item()) for h in HEADS} for j in range(len(chunk))]
    return rate(len(texts), perf_counter() - started)


def bench_c(
    classifier: Runner, texts: Sequence[str], batch: int, min_seconds: float = 0.0
) -> dict[str, float]:
    """Forward passes only, on batches of ``batch`` messages tokenized in advance; the set
    again until ``min_seconds`` of forward passes are timed (a short run is a noisy one)."""
    ids = classifier.tokenize(texts).ids
    chunks = [ids[i : i + batch] for i in range(0, len(ids), batch)]
    first = time_forward(classifier, chunks, batch)
    timed = len(ids) / first["msgs_per_s"]
    if timed >= min_seconds:
        return first
    passes = math.ceil(min_seconds / timed)
    return time_forward(classifier, chunks * passes, batch)


@torch.inference_mode()
def time_forward(
    classifier: Runner, chunks: Sequence[Sequence[Sequence[int]]], full: int
) -> dict[str, float]:
    """Forward passes only, on batches laid out (padded or packed) in advance: C's timing,
    and the batch sweep's. ``full``: the batch size whose batches ``full_batch_ms`` takes."""
    inputs = [classifier.prepare(chunk) for chunk in chunks]
    cuda = str(classifier.device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()  # the inputs' copies, so the first batch does not pay them
    times = []
    for x in inputs:
        started = perf_counter()
        classifier.forward(x)
        if cuda:
            torch.cuda.synchronize()  # kernels run asynchronously; time them, not the launch
        times.append(perf_counter() - started)
    full_times = [t for chunk, t in zip(chunks, times, strict=True) if len(chunk) == full]
    n = sum(len(chunk) for chunk in chunks)
    return {
        "msgs_per_s": rate(n, sum(times)),
        "padding_fraction": padding_fraction(chunks),
        "full_batch_ms": statistics.median(full_times or times) * 1000,
        "batch_ms": statistics.median(times) * 1000,
        "mean_batch": n / len(chunks),
    }


@torch.inference_mode()
def profile_ops(classifier: Runner, texts: Sequence[str], batch: int, rows: int = 15) -> str:
    """torch.profiler's table of the forward pass's operators, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    ids = classifier.tokenize(texts).ids
    inputs = [classifier.prepare(ids[i : i + batch]) for i in range(0, len(ids), batch)]
    for x in inputs[:3]:
        classifier.forward(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in inputs:
            classifier.forward(x)
    table: str = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return table
