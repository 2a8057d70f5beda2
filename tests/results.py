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


def same_result(
    a: dict[str, Any], b: dict[str, Any], tolerance: float = PROBABILITY_TOLERANCE
) -> bool:
    """Two outbound messages agree on everything but where and when: labels, routes and
    reasons exactly, floats to ``tolerance`` (0: bit for bit, for the same batch shapes)."""
    strip = {k: v for k, v in a.items() if k not in VOLATILE}
    other = {k: v for k, v in b.items() if k not in VOLATILE}
    return _same(strip, other, tolerance)


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        pairs = zip(a, b, strict=True) if len(a) == len(b) else None
        return pairs is not None and all(_same(x, y, tolerance) for x, y in pairs)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=tolerance)
    return type(a) is type(b) and a == b
