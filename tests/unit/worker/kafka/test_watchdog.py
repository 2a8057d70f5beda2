"""The watchdog ends a librdkafka call that never returns (librdkafka#5456)."""

from __future__ import annotations

import threading
import time

from worker.kafka.watchdog import Watchdog


def test_a_call_that_overruns_its_timeout_by_the_grace_is_declared_hung() -> None:
    hung: list[tuple[str, float]] = []
    done = threading.Event()

    def on_hang(name: str, overrun: float) -> None:
        hung.append((name, overrun))
        done.set()

    dog = Watchdog(grace_s=0.2, on_hang=on_hang, period_s=0.05)
    with dog.guard("send_offsets_to_transaction", timeout_s=0.1):
        assert done.wait(5)  # "blocked" in the call far past 0.1 s + 0.2 s
    assert hung and hung[0][0] == "send_offsets_to_transaction"
    assert hung[0][1] >= 0.2  # how far past its own timeout


def test_calls_that_return_in_time_are_left_alone() -> None:
    hung: list[str] = []
    dog = Watchdog(grace_s=0.2, on_hang=lambda name, _s: hung.append(name), period_s=0.05)
    for _ in range(5):
        with dog.guard("commit_transaction", timeout_s=0.1):
            time.sleep(0.05)
    time.sleep(0.5)  # idle between calls is not a hang
    assert hung == []
