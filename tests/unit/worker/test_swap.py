from __future__ import annotations

import os
from pathlib import Path

from worker.swap import PointerWatch


def link(models: Path, to: str) -> None:
    tmp = models / "current.tmp"
    tmp.symlink_to(to)
    os.replace(tmp, models / "current")


def test_a_moved_pointer_is_due_once_checked_and_settles_when_swapped(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    link(tmp_path, "v1")
    now = [0.0]
    watch = PointerWatch(tmp_path / "current", every_s=5, clock=lambda: now[0])
    assert not watch.due()
    link(tmp_path, "v2")
    assert not watch.due()  # not checked before every_s
    now[0] = 5
    assert watch.due()
    watch.swapped(str(tmp_path / "v2"))
    now[0] = 10
    assert not watch.due()
    link(tmp_path, "v1")  # rollback is the same operation
    now[0] = 15
    assert watch.due()


def test_a_version_that_failed_is_not_retried_until_the_pointer_moves_or_sighup(
    tmp_path: Path,
) -> None:
    for v in ("v1", "broken", "v3"):
        (tmp_path / v).mkdir()
    link(tmp_path, "v1")
    now = [0.0]
    watch = PointerWatch(tmp_path / "current", every_s=1, clock=lambda: now[0])
    link(tmp_path, "broken")
    now[0] = 1
    assert watch.due()
    watch.refused(str(tmp_path / "broken"))
    now[0] = 2
    assert not watch.due()
    watch.request()
    assert watch.due()  # SIGHUP: try again even so
    watch.refused(str(tmp_path / "broken"))
    link(tmp_path, "v3")
    now[0] = 3
    assert watch.due()


def test_zero_interval_watches_only_for_sighup(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    link(tmp_path, "v1")
    now = [0.0]
    watch = PointerWatch(tmp_path / "current", every_s=0, clock=lambda: now[0])
    link(tmp_path, "v2")
    now[0] = 100
    assert not watch.due()
    watch.request()
    assert watch.due()
