"""`python -m tools.bench --profile-worker` on the real broker, with the smoke artifact."""

from __future__ import annotations

import re
from pathlib import Path

from tools.bench import profile


def test_the_worker_profile_accounts_for_the_model_threads_and_the_broker(
    kafka_bootstrap: str, variants_artifact: Path
) -> None:
    table = profile.profile_worker(kafka_bootstrap, variants_artifact, "torch-fp32", 600, 32)
    first = table.splitlines()[0]
    assert re.match(r"variant torch-fp32: [\d,]+ msg/s end to end over [\d,]+ messages", first)
    assert "ms in the worker" in table and "ms alone" in table
    rows = [line for line in table.splitlines() if re.match(r"\| \S+/\d+ \|", line)]
    # The main thread and the model thread at least; the rows (threads above 1% of a
    # core) account for nearly all of the worker's CPU time.
    assert len(rows) >= 2
    total = re.search(r"worker CPU ([\d.]+) s", table)
    assert total is not None and float(total.group(1)) > 0
    listed = sum(float(r.split("|")[2]) for r in rows)
    assert 0.8 * float(total.group(1)) <= listed <= float(total.group(1)) + 0.01
