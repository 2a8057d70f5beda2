"""Comparing routed results from different paths (the worker on Kafka, the Python API,
``support-worker score``) for the same texts and model."""

from __future__ import annotations

import math
from typing import Any

# Where and when a message was routed differs by path; what it was routed to does not.
VOLATILE = ("timing", "source")
# A probability may move in its last float32 digits with the batch a message shared: the
# batch is padded to its longest text, and the kernels' sums follow the shapes.
PROBABILITY_TOLERANCE = 1e-5


def same_result(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two outbound messages agree on everything but where and when: labels, routes and
    reasons exactly, floats to ``PROBABILITY_TOLERANCE``."""
    strip = {k: v for k, v in a.items() if k not in VOLATILE}
    other = {k: v for k, v in b.items() if k not in VOLATILE}
    return _same(strip, other)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=PROBABILITY_TOLERANCE)
    return type(a) is type(b) and a == b
