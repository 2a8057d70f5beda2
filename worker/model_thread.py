"""The one thread that runs the model: loading, autotune, warm-up and every forward pass.

torch's CPU kernels run on OpenMP (libgomp), which keeps a pool of worker threads for
each thread that starts a parallel region; once it manages more threads than there are
CPUs, its threads sleep at the barriers between operators instead of spinning. The
worker used to load and warm the model on the main thread and serve it from another,
so two pools: on the broker with torch int8 (``python -m tools.bench --profile-worker
torch-int8``, docs/benchmarks.md), the model's two threads then made 3,100 and 4,100
voluntary context switches a second and used 1.48 cores; on one thread, 1 and 80, and
1.87 cores, for 1,551-1,573 msg/s against 1,530-1,533. A small gain, bought with CPU
that was idle. Timed alone, with nothing else running, both layouts are as fast
(``--omp-pools``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def model_executor() -> ThreadPoolExecutor:
    """A single thread for every call that runs the model."""
    return ThreadPoolExecutor(1, thread_name_prefix="model")
