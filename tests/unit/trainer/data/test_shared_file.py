"""One answer to "where is the CLINC file": $CLINC_PATH, else ../shared beside the repo root."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainer.data
from trainer.data import clinc

RELATIVE = Path("shared/data/clinc150/data_oos_plus.json")


def _layout(root: Path) -> tuple[Path, Path]:
    """root/repo beside root/shared holding the CLINC file; returns (repo, file)."""
    repo, file = root / "repo", root / RELATIVE
    repo.mkdir(parents=True)
    file.parent.mkdir(parents=True)
    file.write_text("{}")
    return repo, file


def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    repo, _ = _layout(tmp_path)
    monkeypatch.setattr(trainer.data, "REPO", repo)
    monkeypatch.setenv("CLINC_PATH", "/elsewhere/clinc.json")
    assert clinc.default_path() == Path("/elsewhere/clinc.json")  # given, even if missing


def test_beside_the_repo_root_whatever_the_working_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo, file = _layout(tmp_path / "checkout")
    monkeypatch.setattr(trainer.data, "REPO", repo)
    monkeypatch.delenv("CLINC_PATH", raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared from here is not it
    assert clinc.default_path() == file


def test_beside_the_working_dir_when_not_beside_the_repo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cwd, file = _layout(tmp_path / "run")
    monkeypatch.setattr(trainer.data, "REPO", tmp_path / "site-packages")  # an installed trainer
    monkeypatch.delenv("CLINC_PATH", raising=False)
    monkeypatch.chdir(cwd)
    found = clinc.default_path()
    assert found is not None and found.resolve() == file.resolve()


def test_none_when_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(trainer.data, "REPO", tmp_path / "a" / "repo")
    monkeypatch.delenv("CLINC_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    assert clinc.default_path() is None
