"""The GPU check (tools/gpu_check.py) end to end on the CPU with the smoke model, the pack
(tools/gpu_pack.py) that carries it to a device machine, and the batch sweep's parts:
so `make gpu-check` is known to work before a device is lent.

The tests that train the smoke model are marked ``model`` through its fixture
(tests/conftest.py); the sweep's own rules need none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tools import gpu_pack
from tools.bench import sweep
from worker.model.artifact import load_artifact
from worker.model.classifier import Classifier


@pytest.fixture(scope="module")
def packed(smoke_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.gpu/`` for the smoke artifact, without wheels (no index in the tests)."""
    out = tmp_path_factory.mktemp("pack") / ".gpu"
    argv = ["--model", str(smoke_artifact), "--out", str(out), "--no-wheels", "--messages", "600"]
    assert gpu_pack.main(argv) == 0
    return out


def test_pack_makes_an_fp16_copy_that_loads_and_predicts_as_the_original(
    smoke_artifact: Path, packed: Path
) -> None:
    copy = load_artifact(packed / "artifact")  # its manifest's sha256 fits the new weights
    state = load_file(str(packed / "artifact" / "model.safetensors"))
    assert state["ood.whiten"].dtype == state["ood.means"].dtype == torch.float32
    floating = [k for k, v in state.items() if v.is_floating_point() and not k.startswith("ood.")]
    assert floating and all(state[k].dtype == torch.float16 for k in floating)
    original = load_artifact(smoke_artifact)
    assert copy.manifest.version == original.manifest.version + ".fp16"
    assert copy.manifest.variants is None
    derived = json.loads((packed / "artifact" / "derived.json").read_text())
    assert derived["source_weights_sha256"] == original.manifest.weights_sha256
    assert not any((packed / "artifact" / d).exists() for d in ("onnx", "openvino", "report"))

    texts = [json.loads(line)["text"] for line in (packed / "messages.jsonl").open()]
    assert len(texts) == 600
    a = Classifier(original, "cpu", "float32").predict_texts(texts)
    b = Classifier(copy, "cpu", "float32").predict_texts(texts)
    for head in a.probs:
        assert np.abs(a.probs[head] - b.probs[head]).max() < 0.02, head
        assert (a.top[head] == b.top[head]).mean() >= 0.99, head
    assert a.unfamiliarity is not None and b.unfamiliarity is not None
    np.testing.assert_allclose(a.unfamiliarity, b.unfamiliarity, rtol=0.02, atol=0.02)

    pack = json.loads((packed / "pack.json").read_text())
    assert pack["bytes"]["total"] < gpu_pack.LIMIT_MIB * gpu_pack.MIB
    assert "tools.gpu_check" in pack["device_command"]


def test_make_gpu_check_runs_every_stage_on_the_cpu(packed: Path, tmp_path: Path) -> None:
    """`make gpu-check` as the device runs it, with --device cpu --quick: every stage, and
    every row of the sweep, bf16 included, has its figures."""
    out = tmp_path / "gpu-check.json"
    args = f"--model {packed / 'artifact'} --device cpu --quick --out {out}"
    proc = subprocess.run(
        ["make", "-s", "gpu-check", f"GPU_PY={sys.executable}", f"GPU_CHECK_ARGS={args}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert set(stages) == {"classify", "sweep", "pipeline", "null"}
    for name, stage in stages.items():
        assert stage["ok"], (name, stage.get("error"), proc.stderr[-2000:])
        assert stage["wall_s"] >= 0
    assert stages["classify"]["route"] in {"escalate", "auto_resolve", "more_info"}

    rows = stages["sweep"]["rows"]
    plan = report["check"]["plan"]
    assert {(r["dtype"], r["layout"], r["batch_size"]) for r in rows} == {
        (d, layout, s)
        for d in ("float32", "bfloat16")
        for layout in ("padded", "padding-free")
        for s in plan["sizes"]
    }
    for r in rows:  # bf16 too: the classifier runs the OOD scorer in float32
        assert r.get("error") is None and r["msgs_per_s"]["median"] > 0, r
        m = r["msgs_per_s"]
        assert m["min"] <= m["median"] <= m["max"] and m["spread"] >= 0
    assert set(stages["sweep"]["agreement"]) == {
        f"{d}, {layout}" for d in ("float32", "bfloat16") for layout in ("padded", "padding-free")
    }
    for name in ("pipeline", "null"):
        assert stages[name]["msgs_per_s"]["median"] > 0
    assert stages["pipeline"]["batching"]["max_batch_size"] in plan["sizes"]
    assert report["machine"]["torch"] and report["machine"]["cpu"]["flags"]
    assert report["model"]["version"].endswith(".fp16")
    assert report["messages"]["file"].endswith("messages.jsonl")
    assert report["check"]["ok"] is True
    assert report["check"]["wall_s"] < 180  # the 2-core budget of --quick on the CPU
    assert "| dtype | layout | batch |" in proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bench_batch_sweep_writes_a_row_per_layout_and_size(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    """In a process of its own: the bench configures structlog for its process, which in
    pytest's would keep writing to a captured stream after this test closed it."""
    out = tmp_path / "sweep.json"
    argv = ["--batch-sweep", "8,32", "--quick", "--model", str(smoke_artifact), "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", *argv, "--dtype", "float32", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [(r["layout"], r["batch_size"], r["batch_tokens"]) for r in result["rows"]] == [
        ("padded", 8, 256),
        ("padded", 32, 1024),
        ("padding-free", 8, 256),
        ("padding-free", 32, 1024),
    ]
    assert all(r["msgs_per_s"]["median"] > 0 for r in result["rows"])
    assert "| float32 | padding-free | 32 | 1024 |" in proc.stdout


def test_batches_close_at_the_size_or_before_the_token_budget() -> None:
    ids = [[1] * n for n in (2, 2, 2, 5, 1, 4)]
    # 3 messages fill the size; 5 + 1 fit 6 tokens; 4 more would not
    lengths = [[len(x) for x in b] for b in sweep.batches(ids, size=3, tokens=6)]
    assert lengths == [[2, 2, 2], [5, 1], [4]]
    assert sweep.token_budget(512) == 16_384


def test_best_is_the_largest_size_within_five_percent_of_the_fastest() -> None:
    def row(size: int, speed: float) -> dict[str, object]:
        return {"batch_size": size, "msgs_per_s": {"median": speed}}

    rows = [row(64, 800.0), row(256, 1000.0), row(512, 960.0), row(1024, 900.0)]
    assert sweep.best([*rows, {"batch_size": 2048, "error": "OOM"}]) == row(512, 960.0)
    assert sweep.best([{"batch_size": 64, "error": "x"}]) is None


def test_repeat_stops_after_its_time_but_not_before_two_runs() -> None:
    calls = iter(range(1, 10))
    assert sweep.repeat(lambda: next(calls), 5, seconds=0.0) == [1, 2]
    assert sweep.repeat(lambda: 7, 1, seconds=0.0) == [7]
    assert len(sweep.repeat(lambda: 0, 4, seconds=60.0)) == 4
    with pytest.raises(ValueError, match="positive"):
        sweep.parse_sizes("64,0")
    assert sweep.parse_sizes("64, 256,512") == [64, 256, 512]
