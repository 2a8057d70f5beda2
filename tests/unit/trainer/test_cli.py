"""The trainer's command line."""

from __future__ import annotations

import pytest

from schemas import PACKAGE_VERSION
from trainer.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"support-trainer {PACKAGE_VERSION}"
