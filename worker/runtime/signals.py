"""Stop signals: the first drains and leaves, the second exits at once. SIGHUP: swap in
the model ``model.path`` points to, between batches (worker.swap).

Light on purpose (no torch, no librdkafka): ``support-worker run`` blocks the signals
through ``block_stop_signals`` before it imports either, so that every thread they start
inherits the block.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from worker.errors import ExitCode

if TYPE_CHECKING:
    from worker.pipeline import Pipeline

log = structlog.get_logger("worker")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
RELOAD_SIGNAL = signal.SIGHUP
SIGNALS = STOP_SIGNALS | {RELOAD_SIGNAL}


def block_stop_signals() -> None:
    """In the calling thread, and so in every thread it starts from now on (SIGHUP too:
    its default action would end the process)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


class Stopper:
    """First SIGTERM/SIGINT: finish the batch in hand and leave; the second: exit now.

    Signals are taken by a thread of their own (sigwait), not by a Python handler: a
    handler runs only when the main thread executes Python, and a main thread stuck in
    a librdkafka call would never arm the grace timer, so SIGTERM would never end the
    process. ``start`` blocks the signals in the calling thread before any other thread
    exists (``support-worker run`` blocks them before it imports torch), so every thread
    created later (admin, model, librdkafka) inherits the block and the signal thread is
    the one that receives them.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.pipeline: Pipeline | None = None
        self.signalled = False

    def start(self) -> None:
        block_stop_signals()
        # A thread started before the block (none in `support-worker run`, which blocks
        # first) could still receive a signal: without a handler it would kill the process.
        for signum in SIGNALS:
            signal.signal(signum, self.handle)
        threading.Thread(target=self._wait, name="signals", daemon=True).start()

    def _wait(self) -> None:
        while True:
            self.handle(signal.sigwait(SIGNALS))

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        if signum == RELOAD_SIGNAL:
            watch = None if self.pipeline is None else self.pipeline.watch
            log.info("reload_requested", signal=signum, will_swap=watch is not None)
            if watch is not None:
                watch.request()  # read by the pipeline's loop between batches
            return
        if self.signalled:
            log.warning("second_signal", signal=signum)
            os._exit(ExitCode.SECOND_SIGNAL)  # the uncommitted batch is redone by the next owner
        self.signalled = True
        log.info("stopping", signal=signum, grace_s=self.grace_s)
        if self.pipeline is None:
            os._exit(ExitCode.OK)  # still starting: nothing consumed, nothing to drain
        self.pipeline.stopping = True
        timer = threading.Timer(self.grace_s, _grace_expired, args=(self.grace_s,))
        timer.daemon = True
        timer.start()


def _grace_expired(grace_s: float) -> None:
    log.error("shutdown_grace_expired", grace_s=grace_s)
    os._exit(ExitCode.FATAL)
