"""Model versions side by side and the `current` pointer: promote, roll back, list."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from trainer import registry
from trainer.registry import RegistryError


def _version(smoke_artifact: Path, where: Path, version: str) -> Path:
    """A copy of the smoke artifact that calls itself ``version`` (same weights)."""
    out = where / f"artifact-{version}"
    shutil.copytree(smoke_artifact, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(manifest | {"version": version}))
    return out


def _log(root: Path) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in (root / registry.LOG).read_text().splitlines()]


def test_promote_copies_in_points_current_and_rolls_back(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    first = registry.promote(root, str(_version(smoke_artifact, tmp_path, "1.0")))
    assert (first.previous, first.current, first.copied) == (None, "1.0", True)
    assert (root / "1.0" / "model.safetensors").exists()
    link = root / registry.POINTER
    assert link.is_symlink() and os.readlink(link) == "1.0"  # relative
    second = registry.promote(root, str(_version(smoke_artifact, tmp_path, "2.0")))
    assert (second.previous, second.current) == ("1.0", "2.0")
    assert Path(os.path.realpath(link)) == (root / "2.0").resolve()
    back = registry.promote(root, "1.0")  # a rollback is a promotion of the older version
    assert (back.previous, back.current, back.copied) == ("2.0", "1.0", False)
    assert [(e["from"], e["to"]) for e in _log(root)] == [
        (None, "1.0"),
        ("1.0", "2.0"),
        ("2.0", "1.0"),
    ]
    assert all(e["at"] for e in _log(root))
    assert sorted(p.name for p in root.iterdir()) == [
        ".lock",
        "1.0",
        "2.0",
        "current",
        "promotions.jsonl",
    ]


def test_the_pointer_is_swapped_by_one_rename_readers_never_see_it_missing(
    smoke_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    registry.promote(root, str(_version(smoke_artifact, tmp_path, "1.0")))
    registry.promote(root, str(_version(smoke_artifact, tmp_path, "2.0")))
    seen: list[str] = []
    rename = Path.replace

    def watched(self: Path, target: str | os.PathLike[str]) -> Path:
        seen.append(os.readlink(root / registry.POINTER))  # still the old one, just before
        return rename(self, target)

    monkeypatch.setattr(Path, "replace", watched)
    registry.promote(root, "1.0")
    assert seen == ["2.0"]
    assert os.readlink(root / registry.POINTER) == "1.0"


def test_promoting_the_current_version_again_changes_and_logs_nothing(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    artifact = _version(smoke_artifact, tmp_path, "1.0")
    registry.promote(root, str(artifact))
    again = registry.promote(root, str(artifact))  # already copied: reused, not copied twice
    assert not again.changed and not again.copied
    assert len(_log(root)) == 1


def test_an_artifact_the_worker_would_refuse_is_not_promoted(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    registry.promote(root, str(_version(smoke_artifact, tmp_path, "1.0")))
    broken = _version(smoke_artifact, tmp_path, "2.0")
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(RegistryError, match=r"refusing to promote 2\.0: .*weights_sha256"):
        registry.promote(root, str(broken))
    assert registry.current(root) == "1.0"
    assert len(_log(root)) == 1


def test_unknown_versions_and_clashing_weights_are_refused(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    registry.promote(root, str(_version(smoke_artifact, tmp_path, "1.0")))
    with pytest.raises(RegistryError, match=r"0\.9: neither an artifact .* \(versions: 1\.0\)"):
        registry.promote(root, "0.9")
    other = _version(smoke_artifact, tmp_path / "other", "1.0")
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps(manifest | {"weights_sha256": "e" * 64}))
    with pytest.raises(RegistryError, match="holds other weights under the same version"):
        registry.promote(root, str(other))


def test_versions_lists_oldest_first_marks_current_and_names_a_broken_one(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    registry.promote(root, str(_version(smoke_artifact, tmp_path, "1.0")))
    registry.promote(root, str(_version(smoke_artifact, tmp_path, "2.0")))
    registry.promote(root, "1.0")
    (root / "junk").mkdir()
    (root / "junk" / "manifest.json").write_text("{")
    entries = registry.versions(root)
    assert [(v.version, v.current) for v in entries] == [
        ("junk", False),
        ("1.0", True),
        ("2.0", False),
    ]
    assert entries[0].problem is not None and "not valid JSON" in entries[0].problem
    text = registry.listing(entries)
    assert "* 1.0" in text and "  2.0" in text and "unreadable" in text


def test_a_current_that_is_not_a_link_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / registry.POINTER).mkdir()
    with pytest.raises(RegistryError, match="not a symlink"):
        registry.current(tmp_path)
