"""The real worker with model faults injected from the environment, worker code untouched.

    python -m tests.chaos.faulty_worker run      (same arguments as ``support-worker``)

Switches (all optional; none set = the plain worker):

    CHAOS_FAIL_MARKER=CHAOS-FAIL  a forward pass that holds a text containing it raises
    CHAOS_FAIL_ALL=1              every forward pass after warm-up raises (a dead GPU)
    CHAOS_SLOW_MARKER=CHAOS-SLOW  a forward pass that holds such a text sleeps first
    CHAOS_SLOW_S=8                ... this many seconds
    CHAOS_COMMIT_DELAY_S=1.5      commit_transaction waits this long first, so a SIGKILL
                                  almost surely leaves a transaction open (txn-id scenario)

``Classifier.predict`` receives token ids, not texts, so ``Classifier.tokenize`` is
wrapped to remember the id sequences of marked texts; ``predict`` then recognises a
marked message by its ids, wherever the pipeline's retry-and-split puts it. A marker is
a word no generated normal text contains, so no unmarked text has the same ids.
Warm-up (``Classifier.warmup``) always passes: a model that fails there never joins
the group, and the circuit breaker would not be exercised.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

FAIL_MARKER = "CHAOS-FAIL"
SLOW_MARKER = "CHAOS-SLOW"


class InjectedModelError(RuntimeError):
    """What the patched forward pass raises; its name shows in x-error-type."""


class SlowCommitProducer:
    """A confluent-kafka Producer whose commit_transaction starts late (records sent)."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self._inner, self._delay_s = inner, delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def commit_transaction(self, *args: Any) -> Any:
        self._inner.flush(5)  # the batch's records are on the broker, in the open transaction
        time.sleep(self._delay_s)
        return self._inner.commit_transaction(*args)


def install(env: dict[str, str] | None = None) -> None:
    """Patch worker.model.classifier.Classifier in this process according to ``env``."""
    from worker.model.classifier import Classifier

    env = dict(os.environ if env is None else env)
    commit_delay_s = float(env.get("CHAOS_COMMIT_DELAY_S", "0") or 0)
    if commit_delay_s > 0:
        from worker import service

        make_producer = service.make_producer

        def slow_commit_producer(settings: Any) -> Any:
            return SlowCommitProducer(make_producer(settings), commit_delay_s)

        service.make_producer = slow_commit_producer  # type: ignore[assignment]
    fail_marker = env.get("CHAOS_FAIL_MARKER", "")
    fail_all = env.get("CHAOS_FAIL_ALL", "") == "1"
    slow_marker = env.get("CHAOS_SLOW_MARKER", "")
    slow_s = float(env.get("CHAOS_SLOW_S", "0") or 0)
    if not (fail_marker or fail_all or (slow_marker and slow_s > 0)):
        return
    failing: set[tuple[int, ...]] = set()
    slow: set[tuple[int, ...]] = set()
    warming = threading.local()
    tokenize, predict, warmup = Classifier.tokenize, Classifier.predict, Classifier.warmup

    def marked_tokenize(self: Classifier, texts: Sequence[str]) -> Any:
        tokens = tokenize(self, texts)
        for text, row in zip(texts, tokens.ids, strict=True):
            if fail_marker and fail_marker in text:
                failing.add(tuple(row))
            if slow_marker and slow_marker in text:
                slow.add(tuple(row))
        return tokens

    def faulty_predict(self: Classifier, batch_ids: Sequence[Sequence[int]]) -> Any:
        if not getattr(warming, "on", False):
            if fail_all:
                raise InjectedModelError("chaos: the model is down (simulated CUDA error)")
            if failing and any(tuple(x) in failing for x in batch_ids):
                raise InjectedModelError("chaos: a marked message fails the forward pass")
            if slow and any(tuple(x) in slow for x in batch_ids):
                time.sleep(slow_s)
        return predict(self, batch_ids)

    def quiet_warmup(self: Classifier, batch_size: int = 8) -> None:
        warming.on = True
        try:
            warmup(self, batch_size)
        finally:
            warming.on = False

    Classifier.tokenize = marked_tokenize  # type: ignore[method-assign]
    Classifier.predict = faulty_predict  # type: ignore[method-assign]
    Classifier.warmup = quiet_warmup  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    install()
    from worker.cli import main as worker_main

    return worker_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
