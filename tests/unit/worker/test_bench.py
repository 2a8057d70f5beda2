"""`support-worker bench --source memory` runs the real pipeline without a broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_memory_bench_reports_every_figure(smoke_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "bench",
            "--quick",
            "--source",
            "memory",
            "--model",
            str(smoke_artifact),
            "--json",
            str(out),
            "--threads",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    r = report["results"]
    for key in ("a_notebook_per_message", "b_notebook_batch", "c_model_ceiling", "memory_pipeline"):
        assert r[key] > 0, key
    assert 0 <= r["c_padding_fraction"] < 1
    assert report["messages"]["tokens"]["max"] >= report["messages"]["tokens"]["p95"]
    assert report["machine"]["torch_threads"] == 1
    assert "memory_over_c" in report["ratios"]
    variants = r["c"]
    assert set(variants) == {
        "padded",
        "padding-free",
        "int8, padding-free",
        "bf16 autocast, padding-free",
    }
    for name, v in variants.items():
        assert v["msgs_per_s"] > 0, name
        assert set(v["accuracy_change"]) == {"intent", "urgency", "sentiment", "action"}
        assert v["accuracy_ok"] == all(d >= -0.005 for d in v["accuracy_change"].values())
    assert variants["padded"]["accuracy_change"] == dict.fromkeys(
        variants["padded"]["accuracy_change"], 0.0
    )
    assert r["best_variant"] in variants and variants[r["best_variant"]]["accuracy_ok"]
    assert r["memory_pipeline_no_overlap"] > 0
    assert r["decode_us_per_msg"] > 0 and report["ratios"]["decode_over_forward"] > 0
    assert "| A notebook per-message |" in proc.stdout
