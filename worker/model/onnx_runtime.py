"""The artifact's network as the trainer exported it (ONNX fp32 or int8, or an OpenVINO
int8 IR), run by ONNX Runtime or by OpenVINO on length-bucketed padded sub-batches.

ONNX Runtime runs the ONNX files; OpenVINO compiles the fp32 ONNX file (fp32 or bf16)
or loads the int8 IR that NNCF wrote. Both run padded [B, T] inputs. On short support
messages one padded batch is a fifth to a half padding, so the batch runs as a few
sub-batches of similar length (``text.buckets``): still one call of ``predict`` per
batch, the unit the worker schedules, and the same outputs to float rounding (tests
hold it to that).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.model.artifact import LoadedModel
from worker.model.runner import Runner
from worker.model.text import buckets, pad

INPUTS = ("input_ids", "attention_mask")
OOD_OUTPUT = "ood"


Feed = dict[str, np.ndarray]


class OrtSession:
    """An ONNX Runtime session on the CPU: one sub-batch at a time, on all its threads."""

    parallel = 1  # sub-batches run at once

    def __init__(self, file: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0  # 0: ORT's default, one per core
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: the worker's own threads (librdkafka, tokenizer)
        # and, during autotune, the variant timed next, need those cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self._session.get_outputs()]

    def run(self, outputs: list[str], feeds: Sequence[Feed]) -> list[list[np.ndarray]]:
        return [self._session.run(outputs, feed) for feed in feeds]


class OpenVinoSession:
    """An OpenVINO model compiled for the CPU as one single-threaded stream per thread,
    the sub-batches of a batch spread over the streams (``streams=1``: one stream on
    every thread, for comparison: ``python -m tools.bench --bucketing``).

    Separate streams never wait for each other between layers, so a stream whose core is
    taken by another thread (the consumer, the broker) holds up only its own sub-batch;
    docs/benchmarks.md compares the layouts, with their command. ``precision`` is the
    inference precision of what is not int8: OpenVINO's CPU default is bf16 wherever the
    CPU has bf16 instructions, so fp32 must be asked for.
    """

    def __init__(
        self, file: Path, threads: int | None, precision: str, streams: int | None = None
    ) -> None:
        import openvino as ov

        cores = threads or len(os.sched_getaffinity(0))
        self.parallel = streams or cores
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.parallel,
            "INFERENCE_NUM_THREADS": cores,  # shared by the streams: one each by default
            "INFERENCE_PRECISION_HINT": precision,
        }
        compiled = ov.Core().compile_model(str(file), "CPU", config)
        self.outputs = [next(iter(o.get_names())) for o in compiled.outputs]
        self._queue = ov.AsyncInferQueue(compiled, self.parallel)

    def run(self, outputs: list[str], feeds: Sequence[Feed]) -> list[list[np.ndarray]]:
        index = [self.outputs.index(o) for o in outputs]
        results: list[list[np.ndarray]] = [[] for _ in feeds]

        def done(request: Any, n: int) -> None:
            # Copies: the request's buffers are reused for the next sub-batch it runs.
            results[n] = [np.array(request.get_output_tensor(i).data) for i in index]

        self._queue.set_callback(done)
        for n, feed in enumerate(feeds):
            self._queue.start_async(feed, n)
        self._queue.wait_all()
        return results


def session(
    variant: str, file: Path, threads: int | None, streams: int | None = None
) -> OrtSession | OpenVinoSession:
    """The runtime that ``variant``'s prefix names (ort-..., ov-...), ready to run ``file``."""
    if variant.startswith("ort-"):
        return OrtSession(file, threads)
    return OpenVinoSession(file, threads, "bf16" if variant == "ov-bf16" else "f32", streams)


def spread(groups: list[list[int]], parallel: int) -> list[list[int]]:
    """At least ``parallel`` sub-batches where there are rows enough: the largest halved."""
    groups = [g for g in groups if g]
    while len(groups) < parallel:
        largest = max(groups, key=len)
        if len(largest) < 2:
            break
        groups.remove(largest)
        half = len(largest) // 2
        groups += [largest[:half], largest[half:]]
    return groups


class OnnxClassifier(Runner):
    """The ONNX Runtime and OpenVINO runner over an ONNX file (or IR) of the artifact;
    ``variant`` names it and its prefix the runtime (ort-..., ov-...)."""

    def __init__(
        self,
        loaded: LoadedModel,
        file: Path,
        variant: str,
        threads: int | None = None,
        bucketed: bool = True,
        streams: int | None = None,
    ) -> None:
        super().__init__(loaded)
        self.variant = variant
        self._session = session(variant, file, threads, streams)
        outputs = self._session.outputs
        self.bucketed = bucketed
        # OpenVINO prepares its kernels once per input shape, which costs a run or two:
        # widths rounded up to 4 tokens leave it a quarter of the shapes to learn, for at
        # most 3 padded tokens a row (`python -m tools.bench --shapes`, docs/benchmarks.md).
        self.width_multiple = 4 if variant.startswith("ov-") else 1
        self.device = "cpu"
        self.dtype = "int8" if "int8" in variant else variant.rsplit("-", 1)[1]
        missing = [h for h in self.heads if h not in outputs]
        if missing:
            raise ValueError(f"{file}: no output for head(s) {missing}")
        self._outputs = [*self.heads, *([OOD_OUTPUT] if OOD_OUTPUT in outputs else [])]

    @property
    def precision(self) -> str:
        return f"{self.variant}, {'length-bucketed' if self.bucketed else 'padded'}"

    def prepare(self, batch_ids: Sequence[Sequence[int]]) -> list[tuple[list[int], Any, Any]]:
        """Each sub-batch's rows, and its padded ids and mask: by length, or (not
        ``bucketed``) the batch as it came, split only so that every stream has rows."""
        groups = (
            buckets([len(x) for x in batch_ids]) if self.bucketed else [list(range(len(batch_ids)))]
        )
        groups = spread(groups, self._session.parallel)
        return [
            (rows, *pad([batch_ids[i] for i in rows], self.pad_id, self.width_multiple))
            for rows in groups
        ]

    def forward(
        self, prepared: list[tuple[list[int], Any, Any]]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits of all heads side by side [B, sum C] and OOD scores [B] (or None)."""
        size = sum(len(rows) for rows, _, _ in prepared)
        joined = np.empty((size, sum(self._splits)), dtype=np.float32)
        ood = np.empty(size, dtype=np.float32) if OOD_OUTPUT in self._outputs else None
        feeds = [{INPUTS[0]: ids, INPUTS[1]: mask} for _, ids, mask in prepared]
        results = self._session.run(self._outputs, feeds)
        for (rows, _, _), out in zip(prepared, results, strict=True):
            joined[rows] = np.concatenate(out[: len(self.heads)], axis=1)
            if ood is not None:
                ood[rows] = out[-1]
        return joined, ood
