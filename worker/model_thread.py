"""The one thread that runs the model: loading, autotune, warm-up and every forward pass.

Why one thread: torch's CPU kernels run on OpenMP (libgomp), which keeps a pool of
worker threads for each thread that starts a parallel region. Two threads calling the
model would mean two pools, and once libgomp manages more threads than there are CPUs,
its threads sleep at the barriers between operators instead of spinning. One thread
keeps one pool. The measurement and its command: docs/benchmarks.md, "The profile:
what is left between D and C".
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def model_executor() -> ThreadPoolExecutor:
    """A single thread for every call that runs the model."""
    return ThreadPoolExecutor(1, thread_name_prefix="model")
