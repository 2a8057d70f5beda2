"""The worker profile's counters (tools/bench/profile.py), read from this process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tools.bench import profile


def _spin(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_task_counters_see_the_cpu_time_of_the_thread_that_spent_it() -> None:
    before = profile.task_counters(os.getpid())
    main = f"{Path('/proc/self/comm').read_text().strip()}/{os.getpid()}"
    _spin(0.2)
    after = profile.task_counters(os.getpid())
    delta = profile.difference(after, before)
    assert delta[main]["cpu_s"] >= 0.15  # the main thread's own spin, at clock-tick grain
    assert {"cpu_s", "minor_faults", "voluntary_switches", "involuntary_switches"} == set(
        delta[main]
    )
    assert all(v >= 0 for t in delta.values() for v in t.values())


def test_difference_counts_a_thread_that_started_in_between_from_zero() -> None:
    before = {"a/1": {"cpu_s": 1.0, "minor_faults": 5.0}}
    after = {
        "a/1": {"cpu_s": 1.5, "minor_faults": 9.0},
        "b/2": {"cpu_s": 0.25, "minor_faults": 3.0},
    }
    assert profile.difference(after, before) == {
        "a/1": {"cpu_s": 0.5, "minor_faults": 4.0},
        "b/2": {"cpu_s": 0.25, "minor_faults": 3.0},
    }


def test_an_environment_spec_names_the_variant_its_variables_and_the_broker_niceness() -> None:
    from tools.bench.envs import parse

    assert parse("torch-int8") == ({"SUPPORT_WORKER_MODEL__VARIANT": "torch-int8"}, None)
    env, nice = parse("ov-fp32:OMP_WAIT_POLICY=ACTIVE,BROKER_NICE=19,MALLOC_ARENA_MAX=1")
    assert env == {
        "SUPPORT_WORKER_MODEL__VARIANT": "ov-fp32",
        "OMP_WAIT_POLICY": "ACTIVE",
        "MALLOC_ARENA_MAX": "1",
    }
    assert nice == 19
