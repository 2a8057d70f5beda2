"""Which variant to serve, judged again on the worker's own batches (``MODEL__VARIANT=auto``).

Startup's autotune times each allowed variant alone on the model thread. That proxy can
rank wrong: in the worker the main thread decodes, tokenizes and commits beside the
model, librdkafka has threads of its own, and a runtime that spreads over every core
(OpenVINO's streams) slows all of them. So startup keeps its best few variants built,
and this tuner trials them on real traffic: after a warm-up, blocks of full batches on
each in turn, for a few rounds, and a switch only to a contender that ran at least
``margin`` faster than the variant served. The figure is the pipeline's own cycle:
seconds from one batch's dispatch to the next, per message, which is what the worker
achieves end to end while it has a backlog.

Only batches that closed full count (by size or tokens, not by their deadline): a worker
whose batches close on the deadline keeps up with its traffic and has no speed to gain.
Pure: the pipeline feeds it timings and asks it which variant runs the next batch.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TunerLimits:
    warmup_batches: int = 10  # full batches served before the first trial
    block: int = 4  # batches in a row on one variant; the first is not counted
    rounds: int = 2  # passes over the contenders, interleaved against drift
    margin: float = 0.05  # a contender must be this much faster to be switched to
    recheck_batches: int = 2000  # full batches served between trials


@dataclass(frozen=True)
class Verdict:
    """A trial's outcome: messages per second of cycle per contender, and the choice."""

    msgs_per_s: dict[str, float]
    served: str  # before the trial
    chosen: str

    @property
    def switched(self) -> bool:
        return self.chosen != self.served


@dataclass
class Tuner:
    contenders: Sequence[str]  # the variant served first, then the others
    limits: TunerLimits = field(default_factory=TunerLimits)
    serving: str = ""
    # The latest verdicts only: a worker trials every recheck_batches, for months.
    verdicts: deque[Verdict] = field(default_factory=lambda: deque(maxlen=16))
    _until_trial: int = 0
    # The trial's next batches: (variant, counted). A block's first batch is not counted:
    # its cycle began on the variant before.
    _plan: list[tuple[str, bool]] = field(default_factory=list)
    _samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _last: tuple[str, bool] | None = None  # the batch in the cycle being timed

    def __post_init__(self) -> None:
        if not self.contenders:
            raise ValueError("a tuner needs at least one variant")
        self.serving = self.serving or self.contenders[0]
        self._until_trial = self.limits.warmup_batches

    @property
    def trialling(self) -> bool:
        return bool(self._plan or self._samples)

    def next_variant(self) -> str:
        """The variant the next batch runs on."""
        return self._plan[0][0] if self._plan else self.serving

    def dispatched(self) -> None:
        """The pipeline started the next batch on ``next_variant()``."""
        self._last = self._plan.pop(0) if self._plan else (self.serving, False)

    def observe(self, messages: int, cycle_s: float, full: bool) -> Verdict | None:
        """The cycle of the batch dispatched last but one: from its dispatch to the last
        one's. ``full``: the last one closed by size or tokens, so no wait for traffic is
        in the cycle. A verdict when this ends a trial."""
        if self._last is None or len(self.contenders) < 2:
            return None
        if not full or cycle_s <= 0 or messages <= 0:
            return None
        variant, counted = self._last
        if self.trialling:
            if counted:
                self._samples[variant].append(messages / cycle_s)
            return None if self._plan else self._decide()
        self._until_trial -= 1
        if self._until_trial <= 0:
            self._plan = self._schedule()
        return None

    def _schedule(self) -> list[tuple[str, bool]]:
        order = [self.serving, *(c for c in self.contenders if c != self.serving)]
        block = [False] + [True] * (self.limits.block - 1)
        return [(v, c) for _ in range(self.limits.rounds) for v in order for c in block]

    def _decide(self) -> Verdict:
        rates = {v: statistics.median(s) for v, s in self._samples.items() if s}
        self._samples = defaultdict(list)
        self._until_trial = self.limits.recheck_batches
        served = self.serving
        best = max(rates, key=rates.__getitem__, default=served)
        if served in rates and rates[best] >= rates[served] * (1 + self.limits.margin):
            self.serving = best
        verdict = Verdict({v: round(r, 1) for v, r in rates.items()}, served, self.serving)
        self.verdicts.append(verdict)
        return verdict


class LiveVariants:
    """The startup's contenders, built, and the tuner that picks one per batch.

    The pipeline asks for the model of each batch it dispatches; the cycle of the batch
    before ends there. A rewind or an abort breaks the chain of cycles (``interrupted``).
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        tuner: Tuner,
        on_verdict: Callable[[Verdict], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self.tuner = tuner
        self.on_verdict = on_verdict
        self.clock = clock
        self._since: float | None = None
        self._messages = 0

    def model_for(self, messages: int, full: bool) -> Any:
        """The model for a batch of ``messages`` dispatched now; ``full``: it closed by
        size or tokens."""
        now = self.clock()
        if self._since is not None:
            verdict = self.tuner.observe(self._messages, now - self._since, full)
            if verdict is not None:
                self.on_verdict(verdict)
        variant = self.tuner.next_variant()
        self.tuner.dispatched()
        self._since, self._messages = now, messages
        return self.models[variant]

    def interrupted(self) -> None:
        self._since = None
