"""One answer to "where is the CLINC file": $CLINC_PATH, else the copy vendored in
trainer/data/sets, which needs nothing beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainer.data
from tests.conftest import REPO
from trainer.data import clinc

RELATIVE = Path("trainer/data/sets/clinc150/data_oos_plus.json")


def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINC_PATH", "/elsewhere/clinc.json")
    assert clinc.default_path() == Path("/elsewhere/clinc.json")  # given, even if missing


def test_the_vendored_copy_whatever_the_working_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLINC_PATH", raising=False)
    monkeypatch.chdir(tmp_path)  # no checkout here, and nothing beside one
    assert clinc.default_path() == REPO / RELATIVE
    assert (REPO / RELATIVE).is_file()


def test_under_the_working_dir_when_installed_without_the_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An installed trainer (the wheel carries no data) run from a checkout's root.
    checkout = tmp_path / "checkout"
    (checkout / RELATIVE).parent.mkdir(parents=True)
    (checkout / RELATIVE).write_text("{}")
    monkeypatch.setattr(trainer.data, "SETS", tmp_path / "site-packages" / "sets")
    monkeypatch.delenv("CLINC_PATH", raising=False)
    monkeypatch.chdir(checkout)
    found = clinc.default_path()
    assert found is not None and found.resolve() == (checkout / RELATIVE).resolve()


def test_none_when_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(trainer.data, "SETS", tmp_path / "site-packages" / "sets")
    monkeypatch.delenv("CLINC_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    assert clinc.default_path() is None
