"""The one thread that runs the model: loading, autotune, warm-up and every forward pass.

torch's CPU kernels run on OpenMP (libgomp). libgomp keeps a pool of worker threads for
each thread that starts a parallel region, and once it manages more threads than there
are CPUs it stops spinning at the barriers between operators and sleeps on a futex
instead (its throttled spin count). A model warmed up on the main thread and then served
from the pipeline's model thread had two pools: on 2 cores every barrier of a forward
pass became a sleep and a wake-up (10,000 context switches a second), and a batch took
43 ms in the worker against 31 ms alone (docs/benchmarks.md, "Where D lost to C").
Everything that runs the model goes through this one thread, so one pool serves it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def model_executor() -> ThreadPoolExecutor:
    """A single thread for every call that runs the model."""
    return ThreadPoolExecutor(1, thread_name_prefix="model")
