"""Data sources and the labelled-example format the trainer reads and writes."""

from __future__ import annotations

import os
from pathlib import Path

# The data sets vendored in the checkout (trainer/data/sets/, see its README). They stay
# out of the wheel, so an installed trainer finds them under a checkout's root instead.
SETS = Path(__file__).resolve().parent / "sets"
SETS_IN_CHECKOUT = Path("trainer") / "data" / "sets"


def dataset_file(env: str, relative: str) -> Path | None:
    """Where a vendored data file is: the one place every tool, test and the trainer ask.

    ``$env`` when set (returned even if it does not exist, so the caller's error names
    it); else ``trainer/data/sets/<relative>`` beside this module, then under the working
    directory (an installed trainer run from a checkout's root), the first that exists;
    else None.
    """
    given = os.environ.get(env)
    if given:
        return Path(given)
    for base in (SETS, Path.cwd() / SETS_IN_CHECKOUT):
        candidate = base / relative
        if candidate.exists():
            return candidate
    return None
