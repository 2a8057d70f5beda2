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


def test_the_variants_table_shows_accuracy_change_and_why_one_was_not_scored() -> None:
    from trainer.variants import table

    acc = {"intent": 0.97, "urgency": 0.99, "sentiment": 1.0, "action": 0.975}
    report = {
        "test": "test_noisy",
        "scored_on": 100,
        "results": {
            "torch-int8": {
                "scored": True,
                "allowed": False,
                "accuracy": {**acc, "intent_macro_f1": 0.9},
                "change": {
                    "intent": -0.006,
                    "urgency": 0.0,
                    "sentiment": 0.0,
                    "action": 0.001,
                    "intent_macro_f1": 0.0,
                },
            },
            "ov-bf16": {"scored": False, "allowed": False, "why": "openvino is not installed"},
        },
    }
    lines = table(report).splitlines()
    assert lines[0].startswith("variants scored on 100 test_noisy messages")
    assert lines[4] == (
        "| torch-int8 | 0.9700 (-0.60) | 0.9900 (+0.00) | 1.0000 (+0.00) | 0.9750 (+0.10) "
        "| 0.9000 (+0.00) | no |"
    )
    assert lines[5] == "| ov-bf16 | - | - | - | - | - | no: openvino is not installed |"


def test_the_recorded_allowed_is_the_one_accuracy_rule(variants_artifact: Path) -> None:
    """The manifest's ``allowed`` is worker.model.variants.allowed of the recorded change,
    the rule the bench judges by too."""
    from trainer import variants as trainer_variants
    from worker.model import variants

    assert trainer_variants.allowed is variants.allowed
    report = load_artifact(variants_artifact).manifest.variants
    assert report is not None
    scored = {k: r for k, r in report.results.items() if r.scored}
    assert scored
    for name, result in scored.items():
        assert result.change is not None
        assert result.allowed == variants.allowed(result.change), name
