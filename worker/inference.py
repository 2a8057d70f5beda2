"""One batch through the model: a typed result per item, matched by index.

A failing forward pass is retried once, then the batch is split in halves until the
message that fails is alone: that one becomes a ``Failure`` (a dead letter), and the
rest are classified. When every item fails, a probe text the model must always handle
tells a broken model (the probe fails too) from a batch of bad messages.

Everything here is a function of the model and the items and touches no pipeline state:
``forward`` runs on the model thread, ``resolve`` builds the per-message results on the
pipeline's thread while the model runs the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import structlog

from worker.intake import Item
from worker.model.protocol import BatchOutput, Model, Prediction

log = structlog.get_logger("worker")

# A short text the model must always be able to classify.
PROBE_TEXT = "where is my refund"


class Failure(NamedTuple):
    """The model failed on this message alone (retried and isolated)."""

    error: Exception


class Skipped(NamedTuple):
    """No model call: the message was rejected at intake, or its text is blank."""


ItemResult = Prediction | Failure | Skipped
SKIPPED = Skipped()  # one value for every item the model never sees


class BatchResult(NamedTuple):
    """A batch's results, ``results[i]`` for ``items[i]``."""

    results: list[ItemResult]
    inference_ms: float  # the forward passes that succeeded
    model_calls: int
    model_broken: bool  # every item failed, and so did the probe: the worker, not the input

    @property
    def predicted(self) -> int:
        return sum(isinstance(r, Prediction) for r in self.results)


class Outputs(NamedTuple):
    """A batch as the model thread leaves it: each successful forward pass's output on
    the host with the item indices it covers, and the items the model failed on.

    The per-message objects are built from it by ``resolve`` on the pipeline's thread,
    while the model thread runs the next batch.
    """

    size: int
    passes: list[tuple[list[int], BatchOutput]]
    failures: dict[int, Failure]
    inference_ms: float
    model_calls: int
    model_broken: bool


def forward(model: Model, items: Sequence[Item], probe_ids: Sequence[int]) -> Outputs:
    """Run the items that need the model, isolating any message the model fails on."""
    passes: list[tuple[list[int], BatchOutput]] = []
    failures: dict[int, Failure] = {}
    wanted = [n for n, item in enumerate(items) if item.ids]
    calls, total_ms = 0, 0.0

    def run(group: list[int], retry: bool) -> None:
        nonlocal calls, total_ms
        calls += 1
        try:
            batch = model.predict([items[n].ids for n in group])
            if len(batch) != len(group):
                # A model fault like any other: retried, split, and if it persists the
                # probe and the circuit breaker judge the model.
                raise RuntimeError(f"the model returned {len(batch)} rows for {len(group)}")
        except Exception as exc:  # noqa: BLE001 - any model failure is isolated, not fatal
            log.warning("inference_failed", size=len(group), error=repr(exc), retry=retry)
            if retry:
                run(group, retry=False)
            elif len(group) == 1:
                failures[group[0]] = Failure(exc)
            else:
                half = len(group) // 2
                run(group[:half], retry=False)
                run(group[half:], retry=False)
            return
        total_ms += batch.inference_ms
        passes.append((group, batch))

    if wanted:
        run(wanted, retry=True)
    broken = bool(wanted) and len(failures) == len(wanted) and not probe_passes(model, probe_ids)
    return Outputs(len(items), passes, failures, total_ms, calls, broken)


def resolve(outputs: Outputs) -> BatchResult:
    """Per message, its Prediction, Failure, or SKIPPED (no model call)."""
    results: list[ItemResult] = [SKIPPED] * outputs.size
    for n, failure in outputs.failures.items():
        results[n] = failure
    for group, batch in outputs.passes:
        for n, prediction in zip(group, batch.predictions(), strict=True):
            results[n] = prediction
    return BatchResult(results, outputs.inference_ms, outputs.model_calls, outputs.model_broken)


def infer(model: Model, items: Sequence[Item], probe_ids: Sequence[int]) -> BatchResult:
    """``forward`` and ``resolve`` on one thread (the classify command, the tests)."""
    return resolve(forward(model, items, probe_ids))


def probe_passes(model: Model, probe_ids: Sequence[int]) -> bool:
    """Whether the model still classifies a text it must always handle."""
    try:
        if len(model.predict([probe_ids])) != 1:
            raise RuntimeError("the model returned no row for the probe")
    except Exception as exc:  # noqa: BLE001 - the probe's failure is the verdict
        log.warning("probe_failed", error=repr(exc))
        return False
    return True
