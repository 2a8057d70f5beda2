"""The trainer's command line: evaluate and predict on a smoke artifact, errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import PACKAGE_VERSION
from trainer.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"support-trainer {PACKAGE_VERSION}"


def test_evaluate_any_labelled_jsonl(
    smoke_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "mine.jsonl"
    rows = [
        {"text": "i want my money back for this broken blender", "intent": "refund_request"},
        {"text": "WHAT ARE YOUR OPENING HOURS", "intent": "general_question"},
        {"text": "my card was declined at the mall!", "intent": "technical_problem"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_json = tmp_path / "m.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(smoke_artifact),
            "--data",
            str(data),
            "--json",
            str(out_json),
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| mine | **no** | 3 |" in printed  # per source: the smoke model never saw it
    assert "most confident errors: mine" in printed
    assert "# transfer" in printed and "| synthetic (" in printed
    metrics = json.loads(out_json.read_text())[str(smoke_artifact)]
    mine = metrics["results"][0]
    assert mine["routed"]["policy"].startswith("action>=0.7,unfamiliarity<=")
    assert mine["n"] == 3 and set(mine["heads"]) == {"intent", "urgency", "sentiment", "action"}
    assert {"business_cost", "false_escalations", "false_auto_resolves"} <= set(mine)
    assert metrics["latency"]["single_ms"] > 0 and metrics["latency"]["batch_msgs_per_s"] > 0
    assert (tmp_path / "eval" / "report.md").exists()
    assert (tmp_path / "eval" / "confusion_mine_intent.png").stat().st_size > 1000


def test_evaluate_reports_a_bad_line(
    smoke_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "ok"}\n{"text": "x", "sentiment": "furious"}\n')
    assert main(["evaluate", "--model", str(smoke_artifact), "--data", str(data)]) == 1
    assert "bad.jsonl:2: unknown sentiment label 'furious'" in capsys.readouterr().err


def test_predict_prints_labels_and_confidences(
    smoke_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--model", str(smoke_artifact), "refund me NOW", "hello"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in lines] == ["refund me NOW", "hello"]
    for row in lines:
        for head in ("intent", "urgency", "sentiment", "action"):
            assert 0.0 < row[head]["confidence"] <= 1.0
        assert row["unfamiliarity"]["score"] > 0


def test_an_unknown_backbone_fails_naming_what_was_tried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(
        [
            "train",
            "--preset",
            "smoke",
            "--base-model",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    assert "no backbone found; tried: local dir" in capsys.readouterr().err


@pytest.mark.model
def test_train_on_your_own_csv_files_counting_skipped_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.data.synthetic import generate

    rows = generate(per_intent=30, seed=3)
    for split, name in (("train", "train.csv"), ("val", "val.csv")):
        lines = ["text,intent"] + [f'"{t}",{i}' for t, i in rows[split]]
        if split == "train":
            lines.append(",billing_issue")  # no text: skipped and counted
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    code = main(
        [
            "train",
            "--preset",
            "smoke",
            "--data-dir",
            str(tmp_path),
            "--skip-invalid",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "model"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"skipped 1 invalid lines in {tmp_path}" in out
    assert (tmp_path / "model" / "manifest.json").exists()
