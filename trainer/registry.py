"""Model versions side by side, and the ``current`` pointer the worker serves from.

    DIR/<version>/          one artifact per version (its manifest's version string)
    DIR/current             a relative symlink to the serving version's directory
    DIR/promotions.jsonl    one line per promotion: {"at", "from", "to"}

Promoting and rolling back are one operation, pointing ``current`` at a version. The
link is replaced atomically (a new link under a temporary name, renamed over the old),
so a reader resolves the old version or the new one, never neither; the worker notices
the change of ``realpath(current)``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from schemas.artifact import MANIFEST_FILE
from trainer.errors import TrainerError
from worker.model.artifact import load_artifact, read_manifest
from worker.model.errors import ArtifactError

POINTER: Final = "current"
LOG: Final = "promotions.jsonl"
_LOCK: Final = ".lock"
# A version becomes a directory name: no separators, no dot files, no "..".
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class RegistryError(TrainerError):
    """The models directory or a version in it is not as promote expects; names which."""


@dataclass(frozen=True)
class Version:
    """One directory under DIR, as ``support-trainer models`` lists it."""

    version: str  # the directory's name
    name: str
    created_at: str
    parent: str | None  # the version it was fine-tuned from
    current: bool
    problem: str | None = None  # why its manifest cannot be read


@dataclass(frozen=True)
class Promotion:
    at: str
    previous: str | None
    current: str
    copied: bool  # the artifact was copied into DIR first

    @property
    def changed(self) -> bool:
        return self.previous != self.current


def current(root: Path) -> str | None:
    """The version ``current`` points at; None when there is no pointer yet."""
    link = root / POINTER
    if not link.is_symlink():
        if link.exists():
            raise RegistryError(f"{link}: not a symlink; move it away, promote makes the link")
        return None
    return link.readlink().name


def versions(root: Path) -> list[Version]:
    """Every version directory, oldest first; a broken one is listed with its problem."""
    if not root.is_dir():
        raise RegistryError(f"{root}: not a directory")
    serving = current(root)
    found = []
    for child in root.iterdir():
        if child.name.startswith(".") or child.is_symlink() or not child.is_dir():
            continue
        if not (child / MANIFEST_FILE).exists():
            continue
        try:
            m = read_manifest(child)
        except ArtifactError as exc:
            found.append(Version(child.name, "?", "", None, child.name == serving, str(exc)))
            continue
        parent = m.lineage.parent.version if m.lineage else None
        found.append(Version(child.name, m.name, m.created_at, parent, child.name == serving))
    return sorted(found, key=lambda v: (v.created_at, v.version))


def promote(root: Path, target: str) -> Promotion:
    """Point ``current`` at ``target``: an artifact directory (copied to DIR/<version>/
    unless it is already in DIR) or the name of a version in DIR. The artifact must load
    as the worker loads it. Logged to promotions.jsonl unless it was already current."""
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        version, copied = _install(root, target)
        try:
            load_artifact(root / version)
        except ArtifactError as exc:
            raise RegistryError(f"refusing to promote {version}: {exc}") from None
        previous = current(root)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        promotion = Promotion(at, previous, version, copied)
        if promotion.changed:
            _point(root, version)
            _append(root / LOG, {"at": at, "from": previous, "to": version})
        return promotion


def _install(root: Path, target: str) -> tuple[str, bool]:
    """The version directory ``target`` names, copying an outside artifact into DIR."""
    source = Path(target)
    if not (source / MANIFEST_FILE).is_file():
        if _VERSION.match(target) and (root / target / MANIFEST_FILE).is_file():
            return target, False
        known = ", ".join(v.version for v in versions(root)) or "none"
        raise RegistryError(
            f"{target}: neither an artifact directory nor a version in {root} (versions: {known})"
        )
    if source.resolve().parent == root.resolve():
        return source.resolve().name, False
    try:
        manifest = read_manifest(source)
    except ArtifactError as exc:
        raise RegistryError(str(exc)) from None
    version = manifest.version
    if not _VERSION.match(version):
        raise RegistryError(f"{source}: version {version!r} cannot name a directory")
    dest = root / version
    if dest.exists():
        if read_manifest(dest).weights_sha256 != manifest.weights_sha256:
            raise RegistryError(f"{dest} holds other weights under the same version")
        return version, False
    # Copied under a hidden name, then renamed: a version directory is complete or absent.
    staging = root / f".{version}.incoming-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(dest)
    return version, True


def _point(root: Path, version: str) -> None:
    staging = root / f".{POINTER}.{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(version)  # relative: the directory may be mounted elsewhere
    staging.replace(root / POINTER)
    _fsync_dir(root)


def _append(path: Path, record: dict[str, str | None]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One promotion at a time per directory: read, swap and log are one step."""
    with (root / _LOCK).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def listing(entries: list[Version]) -> str:
    """The table ``support-trainer models`` prints; ``*`` marks the serving version."""
    lines = [f"  {'version':<28} {'name':<28} {'created':<26} parent"]
    for v in entries:
        mark = "*" if v.current else " "
        if v.problem:
            lines.append(f"{mark} {v.version:<28} unreadable: {v.problem}")
            continue
        lines.append(f"{mark} {v.version:<28} {v.name:<28} {v.created_at:<26} {v.parent or '-'}")
    return "\n".join(lines)
