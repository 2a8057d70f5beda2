"""Where the worker's time goes beside the model's own (D against C).

``--profile-worker``: one worker on the broker, serving one variant, with each of its
threads' CPU time, context switches and page faults read from /proc over the stretch in
which it commits, the broker JVM's CPU beside it, and the forward pass per batch in the
worker against the same variant's alone in this process.

``--omp-pools``: the same model's forward passes timed on a thread that loaded, warmed
and ran it alone (one OpenMP pool), and on a thread after the main thread had loaded and
warmed it (two pools), each with the main thread idle and with it tokenizing as the
worker's does: why the worker runs its model on one thread (worker/model_thread.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from tools.bench import broker
from tools.bench.model import bench_c, message_set
from worker.model import variants
from worker.model.artifact import load_artifact
from worker.model_thread import model_executor

TICK = os.sysconf("SC_CLK_TCK")


def task_counters(pid: int) -> dict[str, dict[str, float]]:
    """Per thread of ``pid``, keyed ``name/tid``: CPU seconds, context switches (voluntary:
    it waited; involuntary: it was preempted) and minor page faults so far."""
    out: dict[str, dict[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        base, tid = str(task), task.name
        try:
            name = Path(f"{base}/comm").read_text().strip()
            stat = Path(f"{base}/stat").read_text().rsplit(")", 1)[1].split()
            status = dict(
                line.split(":", 1) for line in Path(f"{base}/status").read_text().splitlines()
            )
        except (OSError, ValueError):
            continue  # the thread ended between the listing and the read
        out[f"{name}/{tid}"] = {
            "cpu_s": (int(stat[11]) + int(stat[12])) / TICK,
            "minor_faults": int(stat[7]),
            "voluntary_switches": int(status["voluntary_ctxt_switches"]),
            "involuntary_switches": int(status["nonvoluntary_ctxt_switches"]),
        }
    return out


def process_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK


def difference(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """``after - before`` per thread; threads started in between count from zero."""
    zero = dict.fromkeys(next(iter(after.values()), {}), 0.0)
    return {
        name: {k: v - before.get(name, zero)[k] for k, v in counters.items()}
        for name, counters in after.items()
    }


def broker_pid() -> int | None:
    """The local broker JVM's pid (deploy/local-kafka), or None if it is not found."""
    found = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True)
    pids = found.stdout.split()
    return int(pids[0]) if pids else None


def profile_worker(bootstrap: str, model: Path, variant: str, n: int, batch: int) -> str:
    """The table of ``--profile-worker``."""
    texts = [ex.text for ex in message_set(n)[0]]
    alone_thread = model_executor()
    clf = alone_thread.submit(
        variants.build, cast(variants.Variant, variant), load_artifact(model), "cpu"
    ).result()
    alone_thread.submit(clf.warmup, batch).result()
    alone = [alone_thread.submit(bench_c, clf, texts, batch).result() for _ in range(2)]
    del clf
    alone_thread.shutdown()

    jvm = broker_pid()
    env = {"SUPPORT_WORKER_MODEL__VARIANT": variant}
    with broker.preloaded_worker(bootstrap, model, texts, env) as w:
        while w.committed() < 1:
            time.sleep(0.1)
        pid = w.proc.pid
        before, jvm_before, started = task_counters(pid), process_cpu(jvm or pid), time.monotonic()
        first = w.committed()
        while w.committed() < n:
            time.sleep(0.1)
        wall = time.monotonic() - started
        after, jvm_after = task_counters(pid), process_cpu(jvm or pid)
        sizes, batches, forward_s, passes = w.metrics(*broker.BATCH_METRICS)
    done = n - int(first)
    threads = difference(after, before)
    total = sum(t["cpu_s"] for t in threads.values())
    lines = [
        f"variant {variant}: {done / wall:,.0f} msg/s end to end over {done:,} messages "
        f"({wall:.1f} s); mean batch {sizes / max(batches, 1):.1f}",
        f"forward per batch: {forward_s / max(passes, 1) * 1000:.1f} ms in the worker, "
        f"{statistics.median(a['full_batch_ms'] for a in alone):.1f} ms alone (median full "
        f"batch of {batch}); C alone "
        f"{statistics.median(a['msgs_per_s'] for a in alone):,.0f} msg/s",
        f"worker CPU {total:.2f} s ({total / wall:.2f} cores, {total / done * 1e6:,.0f} us a "
        f"message); broker JVM {jvm_after - jvm_before:.2f} s "
        f"({(jvm_after - jvm_before) / wall:.2f} cores)"
        + ("" if jvm else " (no broker JVM found: the worker's own figure)"),
        "",
        "| thread | CPU s | cores | us a message | voluntary switches/s | involuntary/s | "
        "minor faults/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in sorted(threads.items(), key=lambda kv: -kv[1]["cpu_s"]):
        if t["cpu_s"] < 0.01 * wall:
            continue
        lines.append(
            f"| {name} | {t['cpu_s']:.2f} | {t['cpu_s'] / wall:.2f} | "
            f"{t['cpu_s'] / done * 1e6:,.0f} | {t['voluntary_switches'] / wall:,.0f} | "
            f"{t['involuntary_switches'] / wall:,.0f} | {t['minor_faults'] / wall:,.0f} |"
        )
    return "\n".join(lines)


LAYOUTS = {
    "one-thread": "one thread built, warmed and ran it (the worker now)",
    "main-then-thread": "the main thread built and warmed it, another thread ran it "
    "(the worker before worker/model_thread.py)",
}


def _layout_ms(model: Path, variant: str, batch: int, layout: str, host_busy: bool) -> float:
    """Median ms per full batch over 3,000 messages, twice, the better kept, in ``layout``.

    ``host_busy``: meanwhile the main thread does what the worker's does between forward
    passes, tokenizing a chunk of messages every few milliseconds.
    """
    texts = [ex.text for ex in message_set(3000)[0]]
    other = ThreadPoolExecutor(1)

    def builder(fn: Any, *args: Any) -> Any:
        return other.submit(fn, *args).result() if layout == "one-thread" else fn(*args)

    clf = builder(variants.build, variant, load_artifact(model), "cpu")
    builder(clf.warmup, batch)
    ids = clf.tokenize(texts).ids
    chunks = [ids[i : i + batch] for i in range(0, len(ids) - batch + 1, batch)]

    def timed() -> float:
        ms = []
        for chunk in chunks:
            started = time.perf_counter()
            clf.predict(chunk)
            ms.append((time.perf_counter() - started) * 1000)
        return statistics.median(ms)

    def run() -> float:
        future = other.submit(timed)
        while host_busy and not future.done():
            clf.tokenize(texts[:batch])
            time.sleep(0.003)
        return future.result()

    return min(run(), run())


def omp_pools(model: Path, variant: str, batch: int) -> str:
    """The table of ``--omp-pools``: each layout in a process of its own, with the main
    thread idle and with it busy as the worker's is."""
    rows = []
    for layout, what in LAYOUTS.items():
        ms = []
        for busy in ("idle", "busy"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tools.bench.profile",
                    str(model),
                    variant,
                    str(batch),
                    layout,
                    busy,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            ms.append(float(out.stdout.split()[-1]))
        rows.append(f"| {what} | {ms[0]:.1f} | {ms[1]:.1f} |")
    return "\n".join(
        [
            f"{variant}, full batches of {batch}: median ms per batch (better of 2 passes over "
            "3,000 messages), each layout in a fresh process",
            "",
            "| where the model ran | main thread idle | main thread tokenizing meanwhile |",
            "|---|---|---|",
            *rows,
        ]
    )


if __name__ == "__main__":
    # One layout of omp_pools, in a fresh process: prints its ms per batch last.
    busy = sys.argv[5] == "busy"
    print(_layout_ms(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], busy))
