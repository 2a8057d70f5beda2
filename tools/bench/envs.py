"""D for one variant under different environments, side by side, interleaved.

    python -m tools.bench.envs MODEL N SPEC [SPEC ...]

SPEC is ``VARIANT`` or ``VARIANT:NAME=VALUE,...``: the worker runs with those
environment variables (``OMP_WAIT_POLICY=ACTIVE``, ``MALLOC_ARENA_MAX=1``, ...).
``BROKER_NICE=N`` is not passed on: it sets the niceness of every thread of the local
broker's JVM for that run (raising it needs no privilege; lowering it back to 0 does).
Prints one line per run. Needs a broker (KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tools.bench.broker import bench_worker
from tools.bench.model import message_set
from tools.bench.profile import broker_pid


def parse(spec: str) -> tuple[dict[str, str], int | None]:
    """(the worker's environment, the broker's niceness or None) of one SPEC."""
    variant, _, rest = spec.partition(":")
    env = {"SUPPORT_WORKER_MODEL__VARIANT": variant}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        env[key] = value
    nice = env.pop("BROKER_NICE", None)
    return env, None if nice is None else int(nice)


def renice_broker(nice: int) -> None:
    pid = broker_pid()
    if pid is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def main(argv: list[str]) -> int:
    model, n, specs = Path(argv[0]), int(argv[1]), argv[2:]
    from worker.runtime import logs

    logs.configure("warning")
    texts = [ex.text for ex in message_set(n)[0]]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
    for spec in specs:
        env, nice = parse(spec)
        renice_broker(nice or 0)
        try:
            figures = bench_worker(bootstrap, model, texts, env)
        finally:
            if nice:
                renice_broker(0)
        print(spec, json.dumps({k: figures[k] for k in ("msgs_per_s", "mean_inference_ms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
