"""The bench's figures against values worked out by hand, and one whole run without a broker.

Each formula is fed a small fixed input (or a fake clock) whose answer is known without the
bench's code: a wrong formula gives a different number and fails here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from schemas.labels import ACTIONS, INTENTS, SENTIMENTS, URGENCIES
from tests.conftest import REPO
from tools.bench import broker, memory, model, report, run
from worker.model import variants
from worker.model.text import Tokenized


class Clock:
    """perf_counter for the bench: time moves only when the test says so."""

    def __init__(self, *readings: float) -> None:
        self.now = 0.0
        self.readings = list(readings)

    def __call__(self) -> float:
        if self.readings:
            self.now = self.readings.pop(0)
        return self.now


class FakeClassifier:
    """Token ids are given per text; a forward pass takes the next of ``durations``."""

    device = SimpleNamespace(type="cpu")

    def __init__(self, ids: dict[str, list[int]], clock: Clock, durations: Sequence[float] = ()):
        self.ids, self.clock, self.durations = ids, clock, list(durations)

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        return Tokenized([self.ids[t] for t in texts], [False] * len(texts))

    def prepare(self, batch: list[list[int]]) -> list[list[int]]:
        return batch

    def forward(self, _inputs: Any) -> None:
        self.clock.now += self.durations.pop(0)

    def predict(self, batch: list[list[int]]) -> Any:
        """Every head predicts label index = the message's first token id."""
        top = np.array([row[0] for row in batch])
        return SimpleNamespace(top=dict.fromkeys(("intent", "urgency", "sentiment", "action"), top))


def test_rate_is_messages_over_seconds() -> None:
    assert model.rate(10, 2.0) == 5.0
    assert model.rate(3, 0.0) == math.inf


def test_padding_fraction_of_one_batch_of_lengths_2_and_4_is_a_quarter() -> None:
    # padded to 4: 8 slots, 6 real tokens
    assert model.padding_fraction([[[1, 1], [1, 1, 1, 1]]]) == 0.25
    # each batch pads to its own longest: 13 real tokens in 4*2 + 3*2 + 1*1 = 15 slots
    assert model.padding_fraction([[[1] * 2, [1] * 4], [[1] * 3, [1] * 3], [[1]]]) == (
        pytest.approx(2 / 15)
    )


def test_c_on_a_fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(model, "perf_counter", clock)
    texts = ["two", "four", "three-a", "three-b", "one"]
    lengths = {"two": 2, "four": 4, "three-a": 3, "three-b": 3, "one": 1}
    # batches of 2: [two, four] 0.1 s, [three-a, three-b] 0.3 s, [one] (partial) 0.05 s
    clf = FakeClassifier({t: [1] * n for t, n in lengths.items()}, clock, [0.1, 0.3, 0.05])
    out = model.bench_c(clf, texts, batch=2)  # type: ignore[arg-type]
    assert out["msgs_per_s"] == pytest.approx(5 / 0.45)  # 11.1 msg/s
    assert out["padding_fraction"] == pytest.approx(2 / 15)
    assert out["full_batch_ms"] == pytest.approx(200.0)  # median of the two full batches only


def test_head_accuracy_counts_hits_per_head_across_batches() -> None:
    predicted = [0, 1, 1, 0, 2]  # the label index every head predicts for message i
    labels = {
        "intent": [INTENTS[0]] * 5,  # right where 0 is predicted: 2 of 5
        "urgency": [URGENCIES[k] for k in predicted],  # all 5
        "sentiment": [SENTIMENTS[k] for k in predicted[:4]] + [SENTIMENTS[0]],  # 4 of 5
        "action": [ACTIONS[2]] * 5,  # 1 of 5
    }
    examples = [SimpleNamespace(text=f"m{i}", label=lambda h, i=i: labels[h][i]) for i in range(5)]
    clf = FakeClassifier({f"m{i}": [k] for i, k in enumerate(predicted)}, Clock())
    acc = model.head_accuracy(clf, examples, batch=2)  # type: ignore[arg-type]
    assert acc == pytest.approx({"intent": 0.4, "urgency": 1.0, "sentiment": 0.8, "action": 0.2})


def test_length_stats_of_known_lengths() -> None:
    ids = {f"m{n}": [1] * n for n in (1, 2, 3, 4, 10)}
    stats = model.length_stats(FakeClassifier(ids, Clock()), list(ids))  # type: ignore[arg-type]
    # p95 by linear interpolation: rank 0.95 * 4 = 3.8, between 4 and 10: 4 + 0.8 * 6
    assert stats == pytest.approx({"mean": 4.0, "p50": 3.0, "p95": 8.8, "max": 10})


def test_decode_reports_the_best_pass_in_microseconds_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # three passes over 100 messages: 0.3 s, 0.2 s, 0.25 s
    monkeypatch.setattr(memory, "perf_counter", Clock(0, 0.3, 10, 10.2, 20, 20.25))
    assert memory.bench_decode(["hello"] * 100, repeats=3) == pytest.approx(2000.0)


def test_accuracy_gate_is_the_variants_rule_half_a_point_per_head() -> None:
    """The bench keeps no rule of its own: it judges by worker.model.variants.allowed."""
    base = {"intent": 0.900, "urgency": 0.800, "sentiment": 0.700, "action": 0.600}
    change = run.accuracy_change({**base, "intent": 0.890, "action": 0.630}, base)
    assert change == pytest.approx({"intent": -0.01, "urgency": 0, "sentiment": 0, "action": 0.03})
    assert not variants.allowed(change)  # intent lost a whole point
    assert variants.allowed({"intent": -0.005, "urgency": 0.0, "sentiment": 0.2, "action": 0.0})
    assert not variants.allowed({"intent": -0.006, "urgency": 0.0, "sentiment": 0, "action": 0})
    assert not hasattr(run, "accuracy_ok") and not hasattr(run, "MAX_ACCURACY_DROP")
    assert run.variants.allowed is variants.allowed


def test_candidates_run_as_variants_by_name_in_the_bench_and_the_worker() -> None:
    assert run.PACKED.env("cpu", "float32") == {"SUPPORT_WORKER_MODEL__VARIANT": "torch-fp32"}
    assert run.PADDED.env("cpu", "auto") == {"SUPPORT_WORKER_MODEL__VARIANT": "torch-fp32-padded"}
    assert run.PADDED.model_variant("cuda", "bfloat16") == "torch-bf16-padded"
    assert [c.env("cpu", "float32") for c in run.CPU_FAST] == [
        {"SUPPORT_WORKER_MODEL__VARIANT": "torch-int8"},
        {"SUPPORT_WORKER_MODEL__VARIANT": "torch-bf16"},
    ]
    names = {c.model_variant("cpu", "float32") for c in (*run.CPU_FAST, *run.RUNTIMES)}
    assert names <= set(variants.SERVED)


def test_best_variant_is_the_fastest_that_keeps_its_accuracy() -> None:
    c = {
        "padded": {"msgs_per_s": 100.0, "accuracy_ok": True},
        "padding-free": {"msgs_per_s": 150.0, "accuracy_ok": True},
        "int8, padding-free": {"msgs_per_s": 300.0, "accuracy_ok": False},
        "bf16 autocast, padding-free": {"msgs_per_s": 200.0, "accuracy_ok": True},
    }
    assert run.best_variant(c) == "bf16 autocast, padding-free"


def test_worker_figures_start_the_clock_at_the_first_commit() -> None:
    # 1,000 messages; 64 committed with the first batch; 9.36 s from then to the last:
    # 936 / 9.36 = 100 msg/s. 16 batches of 1,000 messages, 0.48 s of forward passes
    # (the worker's support_inference_seconds): 30 ms a pass, reported in ms.
    out = broker.worker_figures(1000, 64.0, 9.36, [1000.0, 16.0, 0.48, 16.0])
    assert out == pytest.approx({"msgs_per_s": 100.0, "mean_batch": 62.5, "mean_inference_ms": 30})


def test_latency_percentiles_of_known_latencies() -> None:
    out = broker.latency_figures(250.0, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    # ranks 4.5, 8.55, 8.91 of 0..9, interpolated linearly
    assert out == pytest.approx(
        {"rate": 250.0, "messages": 10, "p50_ms": 55.0, "p95_ms": 95.5, "p99_ms": 99.1}
    )


def test_markdown_of_a_fixed_report() -> None:
    fixed = {
        "results": {
            "a_notebook_per_message": 88.4,
            "b_notebook_batch": 1234.4,
            "c": {
                "padded": {
                    "precision": "float32",
                    "full_batch_ms": 212.4,
                    "msgs_per_s": 289.0,
                    "accuracy_change": {
                        "intent": 0.0,
                        "urgency": -0.0012,
                        "sentiment": 0.003,
                        "action": 0.0,
                    },
                }
            },
            "memory_pipeline": 300.0,
            "decode_us_per_msg": 12.34,
        },
        "ratios": {"memory_over_c": 300 / 289, "d_over_c": None},
    }
    assert report.markdown(fixed).splitlines() == [
        "| measurement | msg/s |",
        "|---|---|",
        "| A notebook per-message | 88 |",
        "| B notebook batch | 1,234 |",
        "| C model only, padded (float32; full batch 212 ms) | 289 |",
        "| memory: worker pipeline, no Kafka | 300 |",
        "",
        "| variant | accuracy change per head (points) |",
        "|---|---|",
        "| padded | intent +0.00, urgency -0.12, sentiment +0.30, action +0.00 |",
        "",
        "decode (orjson + pydantic validation): 12.3 µs per message",
        "",
        "ratios: memory_over_c=1.04, d_over_c=n/a",
    ]


def test_memory_bench_runs_end_to_end(variants_artifact: Path, tmp_path: Path) -> None:
    """``python -m tools.bench --source memory``: the real pipeline, no broker."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--quick",
            "--source",
            "memory",
            "--model",
            str(variants_artifact),
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
    result = json.loads(out.read_text())
    r = result["results"]
    assert result["messages"]["n"] == 1000  # --quick
    assert result["machine"]["torch_threads"] == 1
    for key in ("a_notebook_per_message", "b_notebook_batch", "c_model_ceiling", "memory_pipeline"):
        assert r[key] > 0, key
    assert r["memory_pipeline_no_overlap"] > 0 and r["decode_us_per_msg"] > 0
    assert 0 < r["c_padding_fraction"] < 1  # messages of different lengths pad
    variants = r["c"]
    bf16 = (
        result["machine"]["cpu"]["flags"]["avx512_bf16"]
        or result["machine"]["cpu"]["flags"]["amx_bf16"]
    )
    assert set(variants) == {
        "padded",
        "padding-free",
        "int8, padding-free",
        *(["bf16 autocast, padding-free"] if bf16 else []),
        "ort-fp32",
        "ort-int8-dynamic",
        "ort-int8-static",
        "ov-fp32",
        *(["ov-bf16"] if bf16 else []),
        "ov-int8-static",
    }
    # auto: what the worker's autotune picks among the allowed variants, each timed
    auto = r["auto"]
    assert auto["variant"] in auto["autotune_msgs_per_s"]
    assert auto["autotune_msgs_per_s"][auto["variant"]] == max(auto["autotune_msgs_per_s"].values())
    assert result["variants_accuracy"]["test"] == "test_noisy"
    assert "| variant | intent |" in proc.stdout
    # The base against itself: no change, and so within the gate.
    assert set(variants["padded"]["accuracy_change"].values()) == {0.0}
    assert variants["padded"]["accuracy_ok"] is True
    assert variants[r["best_variant"]]["accuracy_ok"] is True
    assert set(result["ratios"]) == {
        "decode_over_forward",
        "memory_over_c",
        "memory_over_c_packed",
        "c_auto_over_c_fp32_padded",
    }
    # Every figure with its runs and spread, three in quick mode too; a ratio is printed
    # only from stable figures, else it is None and the figure is named unstable.
    figures, unstable = result["spread"]["figures"], result["spread"]["unstable"]
    assert {"a", "b", "c/padded", "memory", "decode_us"} <= set(figures)
    assert all(len(f["runs"]) == 3 for f in figures.values())
    ratio = result["ratios"]["c_auto_over_c_fp32_padded"]
    auto_c = f"c/{auto['c_name']}"
    assert ratio > 0 if ratio is not None else {auto_c, "c/padded"} & set(unstable)
    assert "| figure | median | runs | spread |" in proc.stdout
    assert "| A notebook per-message |" in proc.stdout
