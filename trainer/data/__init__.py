"""Data sources and the labelled-example format the trainer reads and writes."""

from __future__ import annotations

import os
from pathlib import Path


def shared_file(env: str, relative: str) -> Path | None:
    """$env when set, else ../shared/data/<relative> from the working dir when it exists."""
    given = os.environ.get(env)
    if given:
        return Path(given)
    shared = Path("..") / "shared" / "data" / relative
    return shared if shared.exists() else None
