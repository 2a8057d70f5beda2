"""The short chaos suite inside `make test`: crash storm, SIGTERM under backlog, poison and
fuzz, model faults (scenarios 1, 4, 5 and 6 of `make chaos`, smaller).

They share the session broker: none of them kills or freezes it (`make chaos` runs the
broker faults against a broker of its own). A scenario passes only with missing = 0,
duplicated = 0, wrong place = 0 and its own checks; the failure message carries the
counts, examples and the workers' log tails.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.report import markdown
from tests.chaos.scenarios import SHORT_SET, Ctx, iter_failures, run_scenario, summary_line


@pytest.fixture(scope="module")
def chaos(
    kafka_bootstrap: str, smoke_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ctx]:
    seed = random.randrange(1 << 30)
    print(f"chaos seed {seed} (python -m tests.chaos --short --seed {seed} repeats the choices)")
    ctx = Ctx(kafka_bootstrap, smoke_artifact, tmp_path_factory.mktemp("chaos"), True, seed)
    yield ctx
    ctx.close()


@pytest.mark.parametrize("scenario", SHORT_SET)
def test_chaos_short(chaos: Ctx, scenario: str) -> None:
    result = run_scenario(chaos, scenario)
    print(summary_line(result))
    print(markdown({"scenarios": [result], "passed": result["passed"]}).split("\n", 3)[-1])
    assert result["passed"], "\n".join(iter_failures(result))
