"""The ONNX Runtime backend holds to the torch path: the same probabilities (fp32) or
close to them (int8), whatever the batch, its order and its bucketing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.model.artifact import load_artifact
from worker.model.variants import build

TEXTS = [
    "my card was declined at the store",
    "WHERE IS MY REFUND",
    "how do i reset my pin",
    "hi",
    "i was charged twice for my subscription this month and nobody answers my emails",
    "",
    "what are your opening hours on sunday, thanks",
    "FIX THIS NOW!!!",
    "cancel my order",
    "the app keeps crashing whenever i open the payments screen, every single time",
]


def probs(model: object, ids: list[list[int]]) -> dict[str, np.ndarray]:
    return model.predict(ids).probs  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(scope="module")
def ids(variants_artifact: Path) -> list[list[int]]:
    return build("torch-fp32", load_artifact(variants_artifact), "cpu").tokenize(TEXTS).ids


@pytest.mark.parametrize(
    ("variant", "atol"),
    [
        ("ort-fp32", 1e-4),
        ("ort-int8-dynamic", 0.08),
        ("ort-int8-static", 0.15),
        ("ov-fp32", 1e-4),
        ("ov-bf16", 0.05),
        ("ov-int8-static", 0.15),
    ],
)
def test_an_onnx_variant_matches_torch_fp32_within_its_precision(
    variants_artifact: Path, ids: list[list[int]], variant: str, atol: float
) -> None:
    loaded = load_artifact(variants_artifact)
    ref = build("torch-fp32", loaded, "cpu").predict(ids)
    out = build(variant, loaded, "cpu").predict(ids)  # type: ignore[arg-type]
    for head in ref.probs:
        np.testing.assert_allclose(out.probs[head], ref.probs[head], atol=atol)
        assert out.probs[head].sum(1) == pytest.approx(1.0, abs=1e-5)
    assert ref.unfamiliarity is not None and out.unfamiliarity is not None
    # The OOD score reads the pooled embedding, which int8 moves by a few percent.
    rtol = 1e-4 if variant.endswith("fp32") else 0.1
    np.testing.assert_allclose(out.unfamiliarity, ref.unfamiliarity, rtol=rtol, atol=1e-3)


@pytest.mark.parametrize(
    "variant", ["ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-fp32", "ov-int8-static"]
)
def test_batched_equals_one_by_one_and_bucketed_equals_one_padded_batch(
    variants_artifact: Path, ids: list[list[int]], variant: str
) -> None:
    model = build(variant, load_artifact(variants_artifact), "cpu")  # type: ignore[arg-type]
    batched = probs(model, ids)
    single = [probs(model, [x]) for x in ids]
    model.bucketed = False
    padded = probs(model, ids)
    # int8 quantizes activations per tensor, with a scale from the whole sub-batch
    # (dynamic) or at calibrated ranges (static): rows of other batches move the rounding;
    # fp32 holds to float error.
    tol = 1e-5 if variant.endswith("fp32") else 3e-2
    for head in batched:
        np.testing.assert_allclose(batched[head], padded[head], atol=tol)
        np.testing.assert_allclose(
            batched[head], np.concatenate([s[head] for s in single]), atol=tol
        )


def test_an_onnx_file_that_does_not_match_the_manifest_is_refused(
    variants_artifact: Path, tmp_path: Path
) -> None:
    import shutil

    from worker.model.errors import ArtifactError

    copy = tmp_path / "art"
    shutil.copytree(variants_artifact, copy)
    (copy / "onnx" / "fp32.onnx").write_bytes(b"not the exported model")
    with pytest.raises(ArtifactError, match="sha256"):
        build("ort-fp32", load_artifact(copy), "cpu")


def test_an_openvino_ir_whose_weights_were_changed_is_refused(
    variants_artifact: Path, tmp_path: Path
) -> None:
    """The IR's hash covers its .bin: the graph file alone would miss changed weights."""
    import shutil

    from worker.model.errors import ArtifactError

    copy = tmp_path / "art"
    shutil.copytree(variants_artifact, copy)
    weights = copy / "openvino" / "int8-static.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        build("ov-int8-static", load_artifact(copy), "cpu")


def test_spread_gives_each_stream_a_sub_batch_where_there_are_rows_enough() -> None:
    from worker.model.onnx_runtime import spread

    assert spread([[0, 1, 2, 3, 4]], 2) == [[0, 1], [2, 3, 4]]
    assert spread([[7], [0, 1, 2, 3]], 3) == [[7], [0, 1], [2, 3]]
    assert spread([[0]], 2) == [[0]]  # one row: nothing to spread
    assert spread([[0, 1], [2, 3], [4, 5]], 2) == [[0, 1], [2, 3], [4, 5]]
    rows = spread([[0, 1, 2], [3, 4, 5, 6]], 4)
    assert sorted(r for g in rows for r in g) == list(range(7)) and len(rows) == 4
