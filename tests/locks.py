"""The pinned builds in requirements/ (``make lock``), read for the tests: each file's pins
and their hashes, as pip reads them with ``--require-hashes``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

REQUIREMENTS = REPO / "requirements"
# make test and make demo (every extra), the trainer image, the GPU worker image, and the
# CPU worker image (torch comes from PyTorch's CPU index, so neither it nor its CUDA stack
# is in that file).
DEV = REQUIREMENTS / "dev.txt"
TRAIN = REQUIREMENTS / "train.txt"
WORKER = REQUIREMENTS / "worker.txt"
WORKER_CPU = REQUIREMENTS / "worker-cpu.txt"
LOCKS = (DEV, TRAIN, WORKER, WORKER_CPU)
# Which extras of pyproject.toml each lock holds (besides the default dependencies).
EXTRAS = {
    DEV: ("dev", "console", "train", "tracking", "otel"),
    TRAIN: ("train", "tracking"),
    WORKER: ("otel",),
    WORKER_CPU: ("otel",),
}
CUDA_STACK = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_text(text: str) -> dict[str, Pin]:
    """name -> version and sha256s; a requirement that is not ``name==version`` (a range,
    a URL, an option line) raises, since pip would refuse it with --require-hashes."""
    logical = re.sub(r"\\\n", " ", text)
    found: dict[str, Pin] = {}
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()  # a sha256 has no "#"
        if not line:
            continue
        match = PIN.match(line)
        if match is None:
            raise ValueError(f"not a pinned requirement: {line!r}")
        name = canonical(match.group(1))
        found[name] = Pin(match.group(2).rstrip(";"), tuple(HASH.findall(line)))
    return found


def pins(path: Path) -> dict[str, Pin]:
    return pins_text(path.read_text())
