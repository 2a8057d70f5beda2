"""tools.install_size: the sizes of the wheels in a pip report, torch's CUDA stack apart."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tools.install_size import main, wheels


def wheel(folder: Path, name: str, payload: int) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        whl.writestr(f"{name}/data.bin", b"\0" * payload)
    return path


def report(tmp_path: Path, names: dict[str, int], remote: bool = False) -> Path:
    items = []
    for name, payload in names.items():
        path = wheel(tmp_path, name, payload)
        url = f"https://files.example/{path.name}" if remote else path.as_uri()
        items.append({"metadata": {"name": name, "version": "1.0"}, "download_info": {"url": url}})
    items.append(
        {"metadata": {"name": "mine", "version": "0.1"}, "download_info": {"url": "file:///src"}}
    )
    out = tmp_path / f"report-{len(names)}.json"
    out.write_text(json.dumps({"install": items}))
    return out


def test_sizes_come_from_the_wheels_and_the_project_is_named_not_counted(tmp_path: Path) -> None:
    found, other = wheels(
        json.loads(report(tmp_path, {"torch": 4000, "orjson": 1000}).read_text()), tmp_path
    )
    assert {w.name: (w.unpacked, w.cuda) for w in found} == {
        "torch": (4000, True),
        "orjson": (1000, False),
    }
    assert all(0 < w.size < w.unpacked for w in found)  # zeros compress
    assert other == ["mine 0.1 (file:///src)"]


def test_a_remote_url_is_found_in_the_wheelhouse(tmp_path: Path) -> None:
    found, _ = wheels(
        json.loads(report(tmp_path, {"nvidia_cublas": 10}, remote=True).read_text()), tmp_path
    )
    assert [(w.name, w.cuda) for w in found] == [("nvidia-cublas", True)]


def test_the_table_and_what_the_other_report_adds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = report(tmp_path, {"orjson": 10})
    big = report(tmp_path, {"orjson": 10, "nncf": 20, "torch": 30})
    assert main([str(small), "--than", str(big)]) == 0
    out = capsys.readouterr().out
    assert "all                           1" in out
    assert f"only in {big.name}" in out and "nncf" in out and "torch" in out
