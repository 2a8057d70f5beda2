"""Data sources and the labelled-example format the trainer reads and writes."""

from __future__ import annotations

import os
from pathlib import Path

# The checkout this package sits in (trainer/data/ -> the repo root), so that
# ../shared is found from the repo root whatever the working directory.
REPO = Path(__file__).resolve().parents[2]


def shared_file(env: str, relative: str) -> Path | None:
    """Where a shared data file is: the one place every tool, test and the trainer ask.

    ``$env`` when set (returned even if it does not exist, so the caller's error names
    it); else ``../shared/data/<relative>`` beside the repo root, then beside the working
    directory (an installed trainer run from a checkout), the first that exists; else None.
    """
    given = os.environ.get(env)
    if given:
        return Path(given)
    for base in (REPO.parent, Path.cwd().parent):
        candidate = base / "shared" / "data" / relative
        if candidate.exists():
            return candidate
    return None
