"""End the process when a blocking librdkafka call never returns.

librdkafka 2.16 can ignore the timeout of ``send_offsets_to_transaction`` after its
coordinator restarts (librdkafka#5456, #5511): the call blocks forever, the loop stops,
and because the main thread is inside C, no Python signal handler runs either. A worker
that is stuck like that must stop and leave its partitions to a healthy one; the next
``init_transactions`` with its transactional.id aborts what it left open. A call may
overrun its timeout while the broker is frozen (librdkafka waits for the socket), so a
hang is only declared ``grace_s`` past the call's own timeout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

import structlog

from worker.errors import ExitCode

log = structlog.get_logger("worker")

HUNG_CALL_GRACE_S = 30.0


def _exit_hung(name: str, overrun_s: float) -> None:
    log.error(
        "kafka_call_hung",
        call=name,
        overrun_s=round(overrun_s, 1),
        note="exiting; the next owner of these partitions redoes the open batch",
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(ExitCode.FATAL)


class Watchdog:
    def __init__(
        self,
        grace_s: float = HUNG_CALL_GRACE_S,
        on_hang: Callable[[str, float], None] = _exit_hung,
        clock: Callable[[], float] = time.monotonic,
        period_s: float = 1.0,
    ) -> None:
        self.grace_s, self.on_hang, self.clock, self.period_s = grace_s, on_hang, clock, period_s
        self._call: tuple[str, float] | None = None  # (name, when it is hung)
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def guard(self, name: str, timeout_s: float) -> Iterator[None]:
        """Around one blocking call that was given ``timeout_s``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self._thread.start()
        self._call = (name, self.clock() + timeout_s + self.grace_s)
        try:
            yield
        finally:
            self._call = None

    def _watch(self) -> None:
        while True:
            time.sleep(self.period_s)
            call = self._call
            if call is not None and self.clock() > call[1]:
                self.on_hang(call[0], self.clock() - call[1] + self.grace_s)
                return
