"""support-trainer variants: the exported files and the manifest's report of them."""

from __future__ import annotations

import shutil
from pathlib import Path

from trainer.cli import main
from worker.model.artifact import load_artifact
from worker.model.variants import RUNTIME_FILES, file_sha256


def test_exporting_again_replaces_the_files_and_their_report(
    variants_artifact: Path, tmp_path: Path
) -> None:
    """A second export must not be refused by the hashes of the files it replaces."""
    out = tmp_path / "art"
    shutil.copytree(variants_artifact, out)
    before = load_artifact(out).manifest.variants
    assert before is not None
    (out / RUNTIME_FILES["ov-int8-static"]).with_suffix(".bin").write_bytes(b"stale")
    assert main(["variants", "--model", str(out), "--preset", "smoke"]) == 0
    report = load_artifact(out).manifest.variants
    assert report is not None
    for name, file in RUNTIME_FILES.items():
        assert report.results[name].sha256 == file_sha256(out / file)
    assert report.results["ov-int8-static"].scored
