"""Which variant to serve: the allowed ones that run here, timed for a moment on batches
shaped like real traffic, the fastest kept (``MODEL__VARIANT=auto``).

Without torch the torch variants, the baseline torch-fp32 among them, are skipped as
not installed (``Choice.skipped`` says so, and the startup log): the exported variants
are timed against each other. Which of them may serve is the trainer's judgement
against torch-fp32, recorded in the manifest (``variants.allowed``), so it holds
without torch at run time.

Shaped like traffic: full batches (``max_batch_size`` messages) whose token lengths are
drawn from the artifact's noisy-test sample (manifest ``variants.token_lengths``). The
token ids are arbitrary vocabulary ids: speed does not depend on which words they are.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.artifact import ServedVariant
from worker.model.artifact import LoadedModel
from worker.model.errors import ArtifactError
from worker.model.variants import BASELINE, Variant, build, unavailable

# Startup keeps the variants within this share of the fastest's time, up to CONTENDERS of
# them, built for the live trial (worker.model.tuner): the proxy ranked the variant that
# lost end to end first by 10% on an EPYC (issue 25), so it cannot be trusted closer.
CONTENDER_SHARE = 0.75
CONTENDERS = 3


@dataclass(frozen=True)
class Choice:
    variant: Variant
    model: Any
    msgs_per_s: dict[str, float]  # every candidate timed, by name
    skipped: dict[str, str]  # not candidates here, and why
    contenders: dict[str, Any]  # built and settled for the live trial, the chosen one first


def candidates(loaded: LoadedModel, device: str) -> tuple[list[Variant], dict[str, str]]:
    """The artifact's allowed variants that run on this host, and why each other does not."""
    report = loaded.manifest.variants
    chosen: list[Variant] = []
    skipped: dict[str, str] = {}
    if report is None:
        skipped["*"] = "the artifact has no variant report (support-trainer variants)"
    for name, result in report.results.items() if report is not None else ():
        variant: Variant = name  # type: ignore[assignment]
        if not result.allowed:
            skipped[name] = "not allowed by its accuracy on the noisy test"
            continue
        reason = unavailable(variant, loaded, device)
        if reason is not None:
            skipped[name] = reason
            continue
        chosen.append(variant)
    if BASELINE not in chosen and BASELINE not in skipped:
        reason = unavailable(BASELINE, loaded, device)  # torch, when it is not installed
        if reason is None:
            chosen.insert(0, BASELINE)
        else:
            skipped[BASELINE] = reason
    return chosen, skipped


def traffic_batch(
    lengths: Sequence[int], batch_size: int, vocab: int, seed: int = 0
) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(np.asarray(lengths), size=batch_size)
    low = min(1000, vocab - 1)
    return [rng.integers(low, vocab, size=int(n)).tolist() for n in picks]


def throughput(model: Any, batch: list[list[int]], seconds: float) -> float:
    """Messages per second: the median of timed runs after two warm-up runs."""
    model.predict(batch)
    model.predict(batch)
    times: list[float] = []
    until = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < until:
        started = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - started)
    return len(batch) / statistics.median(times)


def _timed(
    name: Variant,
    loaded: LoadedModel,
    device: str,
    threads: int | None,
    batch: list[list[int]],
    seconds: float,
) -> float:
    """One variant built, timed, and released on return."""
    return throughput(build(name, loaded, device, threads), batch, seconds)


def autotune(
    loaded: LoadedModel,
    device: str,
    batch_size: int,
    threads: int | None = None,
    seconds_each: float = 1.0,
    keep_contenders: bool = False,
) -> Choice:
    names, skipped = candidates(loaded, device)
    report = loaded.manifest.variants
    lengths = report.token_lengths if report is not None else [16]
    batch = traffic_batch(lengths, batch_size, int(loaded.tokenizer.vocab_size))
    speeds: dict[str, float] = {}
    for name in names:
        try:
            speeds[name] = round(_timed(name, loaded, device, threads, batch, seconds_each), 1)
        except ArtifactError:
            raise  # a file that is not what the trainer wrote: the artifact is refused
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run it here
            # One variant failing on this host (a runtime's compile, a removed torch API)
            # leaves the others; the worker serves the fastest of what runs.
            skipped[name] = f"failed here: {type(exc).__name__}: {exc}"[:300]
        gc.collect()  # one at a time: an idle runtime must not slow the next one timed
    if not speeds:
        raise ArtifactError(f"no variant of this artifact runs here: {skipped}")
    ranked: list[Variant] = sorted(speeds, key=speeds.__getitem__, reverse=True)  # type: ignore[arg-type]
    close = [v for v in ranked if speeds[v] >= CONTENDER_SHARE * speeds[ranked[0]]]
    contenders: dict[str, Any] = {}
    for name in close[: CONTENDERS if keep_contenders else 1]:
        model = build(name, loaded, device, threads)
        settle(model, name, loaded, batch_size, 3 * seconds_each)
        contenders[name] = model
    return Choice(ranked[0], contenders[ranked[0]], speeds, skipped, contenders)


def settle(
    model: Any, variant: ServedVariant, loaded: LoadedModel, batch_size: int, seconds: float
) -> int:
    """An OpenVINO variant, run on distinct traffic-shaped batches for ``seconds``; how
    many (0 for the others, which need none of it).

    OpenVINO prepares its kernels once per input shape, so it runs slower on the first
    thousands of messages of unseen shapes (`python -m tools.bench --shapes`).
    """
    report = loaded.manifest.variants
    if not variant.startswith("ov-") or report is None:
        return 0
    vocab = int(loaded.tokenizer.vocab_size)
    until, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < until:
        n += 1
        model.predict(traffic_batch(report.token_lengths, batch_size, vocab, seed=n))
    return n
